//! The `kt` command: kt's actors on Kubernetes through a kubeconfig. All logic lives in
//! `kt_k8s::cli`; this file parses the command line, runs it, and turns errors and
//! Ctrl-C into exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kt_k8s::cli::{Cli, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let result = tokio::select! {
        result = run(&cli, &mut out) => result,
        // `kt logs -f` runs until the pod ends; Ctrl-C ends it with the shell's usual
        // code. Followed lines are flushed as they come, so nothing printed is lost.
        _ = tokio::signal::ctrl_c() => return ExitCode::from(130),
    };
    // A flush failure (a closed pipe) is no reason for a second error message.
    let flushed = out.flush();
    match result {
        Ok(()) if flushed.is_ok() => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kt: {e}");
            ExitCode::FAILURE
        }
    }
}
