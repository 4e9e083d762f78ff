//! Authentication: the login flow's endpoints, its cookie, `rd` validation and forward-auth.

pub mod endpoints;
pub mod forward_auth;
pub mod login_cookie;
pub mod redirect;
