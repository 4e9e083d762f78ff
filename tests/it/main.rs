//! Integration tests: the real proxy on loopback, the in-repo OpenID provider, a real
//! upstream echo server, driven over HTTP. One binary (faster to build than one per file).
#![allow(dead_code)]

mod pki;
mod support;

mod bearer;
mod browser;
mod config_check;
mod demo;
mod e2e;
mod edge;
mod explain;
mod fuzz_corpus;
mod fwdauth;
mod headers;
mod idtoken;
mod login;
mod logs;
mod paths;
mod policy;
mod preflight;
mod redirects;
mod sessions;
mod tls_upstream;
mod upstream;
mod websocket;

// SECURITY.md catalogue (tests/SECURITY-COVERAGE.md maps every case to its tests).
mod security_cb;
mod security_dos;
mod security_hdr;
mod security_http;
mod security_idp;
mod security_idt;
mod security_path;
mod security_rd;
mod security_secrets;
mod security_ses;
mod security_support;
