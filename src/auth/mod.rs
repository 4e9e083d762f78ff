//! Authentication: the login flow's endpoints, its cookie, `rd` validation, and the bearer
//! gate for API clients.

pub mod bearer;
pub mod endpoints;
pub mod login_cookie;
pub mod redirect;
