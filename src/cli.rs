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
    /// Prints a fresh random cookie secret in the form the configuration accepts.
    GenerateSecret,
}
