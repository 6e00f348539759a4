/// From command-line arguments to a finished command.
pub mod app;
/// Command-line arguments.
pub mod args;
/// `provision` of several tasks, each in a child process of this binary.
pub mod batch;
/// The user's and the lead's homes, as absolute UTF-8 paths without `.` or `..`.
pub mod paths;
/// What the host reads before the component runs: the run's Sesame ids and port scope.
pub mod run_scope;
/// Sandbox setup: from the command line to what one command runs with.
pub mod setup;
/// Installing this tool as an OpenClaw skill.
pub mod skill;
/// Reading the provisioning task the host passes to the component.
pub mod task_input;
