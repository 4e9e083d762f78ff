//! HTTP protocol rules, one small module each, with their RFCs cited beside the code.

pub mod body;
pub mod browser;
pub mod forwarded;
pub mod framing;
pub mod hop;
pub mod host;
pub mod identity_headers;
pub mod idle;
pub mod pages;
pub mod path;
