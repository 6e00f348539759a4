//! `agent-provisioner`: see `agent-provisioner --help`.

use clap::Parser;
use std::io::Write;

fn main() {
    host_runner::PROCESS_START.get_or_init(std::time::Instant::now);
    let cli = host_runner::cli::Cli::parse();
    let rendered = host_runner::app::run(cli);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(rendered.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(rendered.exit_code);
}
