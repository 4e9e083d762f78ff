//! The command line (SPEC "Command line"). clap answers usage errors with exit code 2.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An authenticating reverse proxy: OpenID Connect login in front of services that have none.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Configuration file (TOML); runs the proxy.
    #[arg(short, long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the proxy.
    Run {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Validates the configuration file (and the secrets it references) without starting.
    Check {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// One-command local demo: a development OpenID provider, an echo upstream and the proxy,
    /// all on 127.0.0.1; prints the URL to open.
    Demo {
        /// Port of the proxy, the URL to open (0: any free port).
        #[arg(long, value_name = "PORT", default_value_t = 4180)]
        port: u16,
        /// Port of the development OpenID provider (0: any free port).
        #[arg(long, value_name = "PORT", default_value_t = 4181)]
        idp_port: u16,
        /// Port of the echo upstream (0: any free port).
        #[arg(long, value_name = "PORT", default_value_t = 4182)]
        upstream_port: u16,
    },
    /// Prints a fresh random cookie secret in the form the configuration accepts.
    GenerateSecret,
    /// Explains which route a URL reaches and whether the given claims pass its policy.
    /// Exit 0 allow, 3 deny, 1 error.
    Explain {
        #[arg(short, long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// An absolute http(s) URL, or a path on public_url's host.
        #[arg(long, value_name = "URL")]
        url: String,
        /// The request method.
        #[arg(long, value_name = "M", default_value = "GET")]
        method: String,
        /// The user's claims: a JSON object, inline or in a file (none: an anonymous request).
        #[arg(long, value_name = "FILE|JSON")]
        claims: Option<String>,
    },
}
