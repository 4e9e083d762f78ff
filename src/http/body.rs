//! The one body type every response uses, and helpers to build it.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Boxed error carried by streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Streaming body: upstream bodies pass through unbuffered; local pages are `Full`.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// No body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}
