//! The command line that starts this binary as a worker.

use std::sync::OnceLock;

use kt_core::Error;

static WORKER_ARGS: OnceLock<Vec<String>> = OnceLock::new();

/// Sets the command-line arguments workers are started with. Test binaries use it (via
/// `#[kt::test]`) to make the test harness run only a worker entry point.
pub fn set_worker_args(args: Vec<String>) {
    let _ = WORKER_ARGS.set(args);
}

/// The arguments set by [`set_worker_args`] (none by default).
pub(crate) fn worker_args() -> Vec<String> {
    WORKER_ARGS.get().cloned().unwrap_or_default()
}

/// The command line that starts this binary as a worker: its path, then the arguments
/// set by [`set_worker_args`] (a test binary's harness filter). Container backends use
/// it in development, when pods run the driver's own binary.
pub fn worker_command() -> kt_core::Result<Vec<String>> {
    let exe = std::env::current_exe().map_err(|e| Error::WorkerStartFailed {
        type_name: String::new(),
        message: format!("cannot find this binary: {e}"),
    })?;
    let mut command = vec![exe.to_string_lossy().into_owned()];
    command.extend(worker_args());
    Ok(command)
}
