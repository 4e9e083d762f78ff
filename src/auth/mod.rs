//! Authentication: the login flow's endpoints, its cookie, and `rd` validation.

pub mod endpoints;
pub mod login_cookie;
pub mod redirect;
