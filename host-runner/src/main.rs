//! `agent-provisioner`: see `agent-provisioner --help`.

use clap::Parser;

fn main() {
    host_runner::PROCESS_START.get_or_init(std::time::Instant::now);
    let cli = host_runner::cli::args::Cli::parse();
    let rendered = host_runner::cli::app::run(cli);
    host_runner::output::write_stdout(&rendered);
    std::process::exit(rendered.exit_code);
}
