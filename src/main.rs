//! The `portcullis` binary: parse the command line, load the configuration, run the library.
//! Errors become one line on stderr and exit code 1 (usage errors: 2, from clap).

use std::process::ExitCode;

use clap::Parser;
use portcullis::cli::{Cli, Command};
use portcullis::config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::GenerateSecret) => {
            println!("{}", portcullis::generate_secret());
            ExitCode::SUCCESS
        }
        Some(Command::Check { config }) => match config::from_file(&config) {
            Ok(cfg) => {
                println!("{}: ok", config.display());
                print!("{}", config::check_summary(&cfg));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(1)
            }
        },
        Some(Command::Explain {
            config,
            url,
            method,
            claims,
        }) => match portcullis::explain::run(&config, &url, &method, claims.as_deref()) {
            Ok(report) => {
                print!("{}", report.text);
                ExitCode::from(report.verdict.exit_code())
            }
            Err(e) => {
                eprintln!("portcullis explain: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::Run { config }) => run(&config),
        Some(Command::Demo {
            port,
            idp_port,
            upstream_port,
        }) => demo(portcullis::demo::DemoOptions {
            proxy_port: port,
            idp_port,
            upstream_port,
        }),
        None => match cli.config {
            Some(config) => run(&config),
            None => {
                eprintln!(
                    "portcullis: no configuration: pass --config FILE (or set PORTCULLIS_CONFIG); see --help"
                );
                ExitCode::from(2)
            }
        },
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let cfg = match config::from_file(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("portcullis: invalid configuration:\n{errors}");
            return ExitCode::from(1);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    portcullis::telemetry::init();
    // Connections are served by the worker threads `serve` starts (one runtime per core);
    // this runtime only runs discovery, housekeeping and the signal handler.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(portcullis::run(cfg, portcullis::server::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::from(1)
        }
    }
}

/// `portcullis demo`: runs until SIGINT/SIGTERM, then exits 0.
fn demo(opts: portcullis::demo::DemoOptions) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    portcullis::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match portcullis::demo::start(opts, portcullis::server::signal()).await {
            Ok(demo) => {
                println!("{}", demo.welcome());
                demo.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis demo: {e}");
                ExitCode::from(1)
            }
        }
    })
}
