//! The worker layer: a process that hosts one actor for a driver, and the driver's side
//! of supervising it.
//!
//! | module | job |
//! |---|---|
//! | [`mode`] | worker mode: the user's binary, started by a backend, serving one actor |
//! | [`dialed`] | workers the driver dials (pods): prepare their files, attach, report deaths |
//! | `link.rs` | the driver's link to a worker after its `Hello`, and its death report, shared by both kinds |
//! | [`supervision`] | a dead worker process replaced behind the same handle (rule S3) |
//! | `command.rs` | the command line that starts this binary as a worker |
//! | [`inherit`] | values a worker inherits from its driver, by name (the store's directory) |
//!
//! It builds on [`crate::node`] and [`crate::wire`]; the placements build on it.

mod command;
pub mod dialed;
pub mod inherit;
mod link;
pub mod mode;
pub mod supervision;

pub(crate) use command::worker_args;
pub use command::{set_worker_args, worker_command};
pub use link::WorkerGone;
pub(crate) use link::{DeathReporter, link};
pub(crate) use mode::encode_config;
pub use mode::{
    CA_FILE, CERT_FILE, CONFIG_FILE, KEY_FILE, LISTEN_IP_ENV, WORKER_DIR_ENV, WORKER_ENV,
    WorkerConfig, is_worker, serve_if_worker,
};
