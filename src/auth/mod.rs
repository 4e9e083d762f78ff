//! Authentication: the login flow's endpoints, its cookie, `rd` validation, forward-auth,
//! and the bearer gate for API clients.

pub mod bearer;
pub mod endpoints;
pub mod forward_auth;
pub mod login_cookie;
pub mod redirect;
