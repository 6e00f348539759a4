//! One short check, before a provision writes anything, that the Sesame API can be
//! reached at all: the host connects to the API origin (`--api-url`) with a short timeout.
//! Without it a provision against an unreachable Sesame would write the home, retry the
//! vault for many seconds, then archive a home nobody used.
//!
//! Per command: a provision needs Sesame before it changes anything (its vault is a step
//! of it, and a failure there rolls everything back), so it is refused at once, exit 2,
//! nothing written. `--plan`, `list`, `ports`, `grants` and `health` without `--report`
//! send nothing. `restore`, `adopt`, `deprovision`, `rollback` and `health --report` call
//! Sesame only to report when their local work is done: a Sesame outage must not keep an
//! operator from taking a sibling down, rolling one back or bringing one back, and a
//! report that fails is said (`unreported`, exit 3).

use crate::cli::args::Command;
use crate::caps::http::Origin;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the host waits for a connection to the API origin (name lookup included).
pub const TIMEOUT: Duration = Duration::from_millis(2500);

/// Whether `command` needs Sesame before it changes anything.
pub fn needed(command: &Command) -> bool {
    matches!(command, Command::Provision(p) if !p.plan)
}

/// Connects to `origin` (then closes the connection); on failure, the one sentence the
/// operator reads, naming `--api-url` as given (`api_url`) and the origin.
pub fn check(origin: &Origin, api_url: &str) -> Result<(), String> {
    let (sender, receiver) = mpsc::channel();
    let address = format!("{}:{}", origin.host, origin.port);
    // A name lookup cannot be given a timeout: it runs aside, and is left behind when slow.
    std::thread::spawn(move || {
        let _ = sender.send(connect(&address));
    });
    let why = match receiver.recv_timeout(TIMEOUT) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(why)) => why,
        Err(_) => format!("no answer within {} s", TIMEOUT.as_secs_f32()),
    };
    Err(format!(
        "cannot reach the Sesame API at {} (--api-url {api_url}): {why} — check --api-url and the network, then run the provision again",
        origin.url()
    ))
}

/// Resolves `address` and connects to its addresses in turn, within [`TIMEOUT`].
fn connect(address: &str) -> Result<(), String> {
    let deadline = Instant::now() + TIMEOUT;
    let addresses = address.to_socket_addrs().map_err(|e| format!("its name does not resolve ({e})"))?;
    let mut why = "its name resolves to no address".to_string();
    for socket in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&socket, left) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => why = "connection refused".into(),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => why = format!("no answer within {} s", TIMEOUT.as_secs_f32()),
            Err(e) => why = e.to_string(),
        }
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_origin_passes_and_a_closed_port_is_one_sentence() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        assert_eq!(check(&Origin::parse(&url).unwrap(), &url), Ok(()));
        drop(listener);
        let started = Instant::now();
        let err = check(&Origin::parse(&url).unwrap(), &url).unwrap_err();
        assert!(started.elapsed() < TIMEOUT, "a refused connection is known at once");
        assert_eq!(err, format!("cannot reach the Sesame API at {url} (--api-url {url}): connection refused — check --api-url and the network, then run the provision again"));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_said() {
        let url = "https://sesame.invalid";
        let err = check(&Origin::parse(url).unwrap(), url).unwrap_err();
        assert!(err.starts_with("cannot reach the Sesame API at https://sesame.invalid:443 (--api-url https://sesame.invalid): "), "{err}");
    }
}
