//! Integration tests: the real proxy on loopback, the in-repo OpenID provider, a real
//! upstream echo server, driven over HTTP. One binary (faster to build than one per file).
#![allow(dead_code)]

mod support;

mod config_check;
mod e2e;
mod edge;
mod fuzz_corpus;
mod headers;
mod idtoken;
mod login;
mod logs;
mod paths;
mod redirects;
mod sessions;
mod tls_upstream;
mod upstream;
mod websocket;
