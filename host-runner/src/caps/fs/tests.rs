use super::*;
use crate::caps::fs::grants::GrantConfig;
use crate::record::state::HostState;
use crate::runtime::bindings::openclaw::provisioner::fs::Host as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

const LEAD_KEY: &str = "sk_sesame_lead_secret_0001";
const LEAD_LLM_KEY: &str = "sk-ant-lead-llm-0001";

/// A temp home with a lead home, a sibling home the host made (`victim`), another
/// OpenClaw profile's home (`work`) and an outside dir.
struct Fixture {
    _temp: tempfile::TempDir,
    home: PathBuf,
    outside: PathBuf,
    fs: FsCap,
}

impl Fixture {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().join("home");
        let outside = temp.path().join("outside");
        for dir in [
            home.join(".openclaw/workspace"),
            home.join(".openclaw/extensions/sesame/dist"),
            home.join(".openclaw/skills/sesame"),
            home.join(".openclaw-victim/logs"),
            home.join(".openclaw-work"),
            home.join(".ssh"),
            outside.clone(),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(home.join(".openclaw/workspace/USER.md"), "Alex\n").unwrap();
        std::fs::write(home.join(".openclaw/openclaw.json"), format!("{{\"apiKey\": \"{LEAD_KEY}\"}}")).unwrap();
        std::fs::write(home.join(".openclaw/extensions/sesame/dist/index.js"), "// plugin\n").unwrap();
        std::fs::write(home.join(".ssh/authorized_keys"), "ssh-ed25519 good\n").unwrap();
        std::fs::write(home.join(".openclaw/skills/sesame/SKILL.md"), "# skill\n").unwrap();
        std::fs::write(home.join(".openclaw-work/openclaw.json"), "{}\n").unwrap();
        std::fs::write(outside.join("secret.txt"), "outside secret\n").unwrap();
        std::fs::write(home.join(".openclaw/.env"), format!("ANTHROPIC_API_KEY={LEAD_LLM_KEY}\nDATABASE_URL=postgres://u:pw@db/x\n")).unwrap();
        symlink(&outside, home.join(".openclaw-victim/escape")).unwrap();
        let state = HostState::in_memory();
        state.claim_home("victim", &home.join(".openclaw")).unwrap();
        let grants = Grants::new(GrantConfig {
            home: home.clone(),
            lead_home: home.join(".openclaw"),
            lead_handles: vec!["chief".into()],
            state: Arc::new(state),
        })
        .unwrap();
        let audit = Arc::new(Audit::stderr_only());
        let plugins = LeadPlugins::found(&home.join(".openclaw"), &["sesame".into()], &["sesame".into()], "https://api.sesame.space");
        let lead_env = crate::lead::lead_env::LeadEnv::read(&home.join(".openclaw"), []).unwrap();
        let keys = LeadKeys::find(&home.join(".openclaw"), &lead_env).unwrap();
        let fs = FsCap::new(grants, audit, Secret::new(LEAD_KEY), plugins, keys);
        Self { _temp: temp, home, outside, fs }
    }

    fn p(&self, rel: &str) -> String {
        format!("{}/{rel}", self.home.display())
    }

    /// Every file under the temp dir with its contents, to show nothing changed.
    fn snapshot(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for root in [&self.home, &self.outside] {
            for entry in walkdir(root) {
                let text = std::fs::read_to_string(&entry).ok();
                out.push((entry.display().to_string(), text));
            }
        }
        out.sort();
        out
    }
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if root.is_dir() && !root.is_symlink() {
        for entry in std::fs::read_dir(root).unwrap() {
            out.extend(walkdir(&entry.unwrap().path()));
        }
    }
    out
}

fn mode(path: &str) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn denied<T: std::fmt::Debug>(result: Fs<T>, needle: &str) {
    match result {
        Err(FsError::Denied(why)) => assert!(why.contains(needle), "{why:?} should mention {needle:?}"),
        other => panic!("expected a denial mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn hostile_writes_are_denied_and_change_nothing() {
    let mut f = Fixture::new();
    let before = f.snapshot();
    denied(f.fs.write_atomic(f.p(".ssh/authorized_keys"), b"evil".to_vec(), 0o600), "outside every grant");
    denied(f.fs.write_atomic(f.p(".openclaw/workspace/USER.md"), b"".to_vec(), 0o644), "does not allow writing");
    denied(f.fs.create_dir_all(f.p(".openclaw/evil"), 0o700), "only its workspace notes");
    denied(f.fs.remove_tree(f.p(".openclaw/workspace")), "only its workspace notes");
    denied(f.fs.archive_tree(f.p(".openclaw-victim"), f.p(".openclaw/a.tar.gz")), "only its workspace notes");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/../.ssh/authorized_keys"), b"evil".to_vec(), 0o600), "`..`");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/./x"), b"evil".to_vec(), 0o600), "`.`");
    denied(f.fs.write_atomic(".openclaw-victim/x".into(), b"evil".to_vec(), 0o600), "absolute");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/escape/pwned"), b"evil".to_vec(), 0o644), "outside the grant");
    denied(f.fs.write_atomic(f.p(".config/systemd/user/openclaw-victim.service"), b"evil".to_vec(), 0o644), "outside every grant");
    denied(f.fs.write_atomic(f.p(".openclaw-UPPER/x"), b"evil".to_vec(), 0o644), "not a sibling handle");
    denied(f.fs.write_atomic(f.p(".openclaw-work/openclaw.json"), b"{}".to_vec(), 0o600), "another OpenClaw profile");
    denied(f.fs.read(f.p(".openclaw-work/openclaw.json")), "another OpenClaw profile");
    denied(f.fs.create_dir_all(f.p(".openclaw-dev/x"), 0o700), "reserved");
    denied(f.fs.create_dir_all(f.p(".openclaw-chief"), 0o700), "lead's own handle");
    denied(f.fs.archive_tree(f.p(".openclaw"), f.p(".openclaw-archives/lead.tar.gz")), "only its workspace notes");
    denied(f.fs.archive_tree(f.p(".openclaw/agent-provisioner"), f.p(".openclaw-archives/state.tar.gz")), "only a sibling home");
    denied(f.fs.walk_tree(f.p(".openclaw")), "only its workspace notes");
    denied(f.fs.walk_tree(f.p(".openclaw-archives")), "only a sibling home");
    denied(f.fs.create_dir_all(f.p(".openclawx"), 0o700), "outside every grant");
    denied(f.fs.remove_tree(f.p(".openclaw-archives")), "cannot be removed");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn the_journals_in_the_provisioner_state_can_be_listed_and_the_logs_cannot() {
    let mut f = Fixture::new();
    let journals = f.p(".openclaw/agent-provisioner/journal");
    f.fs.create_dir_all(journals.clone(), 0o700).unwrap();
    f.fs.write_atomic(format!("{journals}/nova.json"), b"{}".to_vec(), 0o600).unwrap();
    assert_eq!(f.fs.walk_tree(journals).unwrap(), ["nova.json"]);
    denied(f.fs.walk_tree(f.p(".local/state/agent-provisioner/logs")), "only a sibling home");
}

#[test]
fn symlinks_never_lead_out_of_a_grant() {
    let mut f = Fixture::new();
    denied(f.fs.read(f.p(".openclaw-victim/escape/secret.txt")), "outside the grant");
    denied(f.fs.walk_tree(f.p(".openclaw-victim/escape")), "outside the grant");
    assert!(!Path::new(&f.p(".openclaw-victim/stolen")).exists());
    // Removing the link removes the link, never its target.
    f.fs.remove_tree(f.p(".openclaw-victim/escape")).unwrap();
    assert!(f.outside.join("secret.txt").exists());
}

#[test]
fn a_symlink_as_the_sibling_home_is_not_followed() {
    let mut f = Fixture::new();
    symlink(&f.outside, f.home.join(".openclaw-trap")).unwrap();
    denied(f.fs.read(f.p(".openclaw-trap/secret.txt")), "not a sibling home this host created");
    // A sibling the host made that turns its home into a link.
    f.fs.grants.state().claim_home("trap", &f.home.join(".openclaw")).unwrap();
    denied(f.fs.read(f.p(".openclaw-trap/secret.txt")), "is a symlink; not following it");
    denied(f.fs.write_atomic(f.p(".openclaw-trap/x"), b"evil".to_vec(), 0o600), "is a symlink; not following it");
    let m = f.fs.metadata(f.p(".openclaw-trap")).unwrap().unwrap();
    assert_eq!(m.kind, EntryKind::Symlink);
    f.fs.remove_tree(f.p(".openclaw-trap")).unwrap();
    assert!(f.outside.join("secret.txt").exists(), "the target survives");
}

#[test]
fn the_leads_key_never_leaves_through_files() {
    let mut f = Fixture::new();
    for secret in [".openclaw/openclaw.json", ".openclaw/.env", ".openclaw/agents/main/agent/auth-profiles.json", ".openclaw/credentials/x.json"] {
        denied(f.fs.read(f.p(secret)), "only its workspace notes");
        denied(f.fs.metadata(f.p(secret)), "only its workspace notes");
    }
    assert_eq!(f.fs.read(f.p(".openclaw/workspace/USER.md")).unwrap(), b"Alex\n");
    for key in [LEAD_KEY, LEAD_LLM_KEY] {
        std::fs::write(f.home.join(".openclaw/workspace/TOOLS.md"), format!("key: {key}\n")).unwrap();
        denied(f.fs.read(f.p(".openclaw/workspace/TOOLS.md")), "one of the lead's keys");
        std::fs::write(f.home.join(".openclaw/skills/sesame/config.txt"), key).unwrap();
        denied(f.fs.copy_lead_plugins("victim".into()), "one of the lead's keys");
        assert!(!Path::new(&f.p(".openclaw-victim/skills/sesame")).exists(), "a refused copy leaves nothing behind");
    }
}

#[test]
fn no_code_and_no_unchecked_config_goes_into_a_sibling_home() {
    let mut f = Fixture::new();
    let before = f.snapshot();
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/extensions/evil"), 0o700), "loads code from extensions/");
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/workspace/skills"), 0o700), "loads code from workspace/skills/");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/hooks"), b"x".to_vec(), 0o600), "loads code from hooks/");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/openclaw.json"), br#"{"plugins":{"load":{"paths":["/tmp"]}}}"#.to_vec(), 0o600), "openclaw.json");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/.env"), b"NODE_OPTIONS=\"--require /tmp/x.js\"\n".to_vec(), 0o600), "written by the host");
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/agents/main/agent/auth.json"), 0o700), "written by the host");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/x"), b"x".to_vec(), 0o4777), "setuid");
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/shared"), 0o777), "group/other write");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn the_host_copies_the_allowlisted_plugins_itself() {
    let mut f = Fixture::new();
    let lead_ext = f.home.join(".openclaw/extensions/sesame");
    std::fs::set_permissions(lead_ext.join("dist/index.js"), std::fs::Permissions::from_mode(0o4777)).unwrap();
    symlink("/etc/passwd", lead_ext.join("passwd")).unwrap();
    std::fs::create_dir_all(f.home.join(".openclaw/extensions/other")).unwrap();
    assert_eq!(f.fs.copy_lead_plugins("victim".into()).unwrap(), ["extensions/sesame", "skills/sesame"]);
    assert_eq!(std::fs::read(f.p(".openclaw-victim/extensions/sesame/dist/index.js")).unwrap(), b"// plugin\n");
    assert_eq!(mode(&f.p(".openclaw-victim/extensions/sesame/dist/index.js")), 0o755, "modes narrowed");
    assert!(!Path::new(&f.p(".openclaw-victim/extensions/sesame/passwd")).exists(), "links skipped");
    assert!(!Path::new(&f.p(".openclaw-victim/extensions/other")).exists(), "only the allowlist");
    assert!(Path::new(&f.p(".openclaw-victim/skills/sesame/SKILL.md")).exists());
    f.fs.copy_lead_plugins("victim".into()).unwrap();
    denied(f.fs.copy_lead_plugins("work".into()), "another OpenClaw profile");
}

#[test]
fn a_sibling_home_round_trip_with_modes() {
    let mut f = Fixture::new();
    let root = f.p(".openclaw-nova");
    assert_eq!(f.fs.metadata(root.to_owned()).unwrap(), None);
    f.fs.create_dir_all(f.p(".openclaw-nova/agents/main/agent"), 0o700).unwrap();
    for dir in [".openclaw-nova", ".openclaw-nova/agents", ".openclaw-nova/agents/main/agent"] {
        assert_eq!(mode(&f.p(dir)), 0o700, "{dir}");
    }
    f.fs.write_atomic(f.p(".openclaw-nova/notes.txt"), b"ANTHROPIC_API_KEY=x\n".to_vec(), 0o600).unwrap();
    assert!(f.fs.grants.state().sibling("nova", &f.home.join(".openclaw")).is_some(), "creating the home recorded it");
    f.fs.write_atomic(f.p(".openclaw-nova/README"), b"hi".to_vec(), 0o644).unwrap();
    assert_eq!(mode(&f.p(".openclaw-nova/notes.txt")), 0o600);
    assert_eq!(mode(&f.p(".openclaw-nova/README")), 0o644);
    assert_eq!(f.fs.read(f.p(".openclaw-nova/notes.txt")).unwrap(), b"ANTHROPIC_API_KEY=x\n");
    let m = f.fs.metadata(f.p(".openclaw-nova/notes.txt")).unwrap().unwrap();
    assert_eq!((m.kind, m.size, m.mode), (EntryKind::File, 20, 0o600));
    assert_eq!(f.fs.walk_tree(root.to_owned()).unwrap(), ["README", "agents/", "agents/main/", "agents/main/agent/", "notes.txt"]);
    f.fs.create_dir_all(root.to_owned(), 0o755).unwrap();
    assert_eq!(mode(&root), 0o700, "an existing directory keeps its mode");
    f.fs.remove_tree(root.to_owned()).unwrap();
    assert!(!Path::new(&root).exists());
    assert!(f.fs.grants.state().sibling("nova", &f.home.join(".openclaw")).is_none(), "removing it released it");
    f.fs.remove_tree(root.to_owned()).unwrap();
}

#[test]
fn archives_round_trip_and_are_verifiable() {
    let mut f = Fixture::new();
    f.fs.create_dir_all(f.p(".openclaw-nova/logs"), 0o700).unwrap();
    f.fs.write_atomic(f.p(".openclaw-nova/logs/stdout.log"), b"up\n".to_vec(), 0o600).unwrap();
    f.fs.create_dir_all(f.p(".openclaw-archives"), 0o700).unwrap();
    let archive = f.p(".openclaw-archives/nova-20261125-102030.tar.gz");
    let stats = f.fs.archive_tree(f.p(".openclaw-nova"), archive.to_owned()).unwrap();
    assert_eq!((stats.files, stats.directories, stats.bytes), (1, 2, 3));
    assert_eq!(mode(&archive), 0o600);
    assert_eq!(f.fs.list_archive(archive.to_owned()).unwrap(), [".openclaw-nova/", ".openclaw-nova/logs/", ".openclaw-nova/logs/stdout.log"]);
    assert!(matches!(f.fs.archive_tree(f.p(".openclaw-nova"), archive.to_owned()), Err(FsError::AlreadyExists(_))));
    let names: Vec<String> = std::fs::read_dir(f.home.join(".openclaw-archives")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["nova-20261125-102030.tar.gz"], "no temporary file is left");
    std::fs::write(f.home.join(".openclaw-archives/broken.tar.gz"), b"\x1f\x8b garbage").unwrap();
    assert!(matches!(f.fs.list_archive(f.p(".openclaw-archives/broken.tar.gz")), Err(FsError::Io(_))));
}

#[test]
fn the_provisioner_state_is_writable_inside_the_read_only_lead_home() {
    let mut f = Fixture::new();
    f.fs.create_dir_all(f.p(".openclaw/agent-provisioner"), 0o700).unwrap();
    f.fs.write_atomic(f.p(".openclaw/agent-provisioner/family.json"), b"{}".to_vec(), 0o600).unwrap();
    assert_eq!(mode(&f.p(".openclaw/agent-provisioner")), 0o700);
    denied(f.fs.remove_tree(f.p(".openclaw/agent-provisioner")), "cannot be removed");
}

#[test]
fn missing_things_are_reported_as_such() {
    let mut f = Fixture::new();
    assert!(matches!(f.fs.read(f.p(".openclaw/workspace/TOOLS.md")), Err(FsError::NotFound(_))));
    assert!(matches!(f.fs.read(f.p(".openclaw-ghost/x")), Err(FsError::NotFound(_))));
    assert_eq!(f.fs.metadata(f.p(".openclaw-ghost/x")).unwrap(), None);
    assert!(matches!(f.fs.write_atomic(f.p(".openclaw-victim/no/such/dir"), b"x".to_vec(), 0o600), Err(FsError::NotFound(_))));
    assert!(matches!(f.fs.read(f.p(".openclaw-victim/logs")), Err(FsError::Io(_))), "a directory is not a file");
}

#[test]
fn credentials_are_written_by_the_host_with_the_leads_key_for_one_provider_only() {
    let mut f = Fixture::new();
    f.fs.create_dir_all(f.p(".openclaw-nova/agents/main/agent"), 0o700).unwrap();
    let written = f.fs.write_credentials("nova".into(), "anthropic".into(), CredentialLayout::EnvFile, None).unwrap();
    assert_eq!(written, f.p(".openclaw-nova/.env"));
    let env = std::fs::read_to_string(&written).unwrap();
    assert!(env.contains(&format!("ANTHROPIC_API_KEY=\"{LEAD_LLM_KEY}\"")), "{env}");
    assert!(!env.contains("DATABASE_URL") && !env.contains("pw@db"), "no other entry of the lead's .env: {env}");
    assert_eq!(mode(&written), 0o600);
    f.fs.write_credentials("nova".into(), "openai".into(), CredentialLayout::Legacy, Some("sk-task-own-1".into())).unwrap();
    let auth = std::fs::read_to_string(f.p(".openclaw-nova/agents/main/agent/auth.json")).unwrap();
    assert!(auth.contains("sk-task-own-1") && auth.contains("openai"), "{auth}");
    denied(f.fs.write_credentials("nova".into(), "openrouter".into(), CredentialLayout::EnvFile, None), "the lead has no openrouter key");
    denied(f.fs.write_credentials("nova".into(), "anthropic".into(), CredentialLayout::EnvFile, Some("a\"\nNODE_OPTIONS=x".into())), "not a plain key");
    denied(f.fs.write_credentials("work".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "another OpenClaw profile");
    denied(f.fs.write_credentials("dev".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "reserved");
    assert!(!f.home.join(".openclaw-work/.env").exists());
}

#[test]
fn special_files_and_deep_trees_are_refused_without_blocking() {
    let mut f = Fixture::new();
    let fifo = f.home.join(".openclaw-victim/logs/stdout.log");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(f.fs.read(fifo.display().to_string().to_owned()), Err(FsError::Io(why)) if why.contains("FIFO")));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let mut deep = f.home.join(".openclaw-victim/deep");
    for _ in 0..=MAX_WALK_DEPTH {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    assert!(matches!(f.fs.walk_tree(f.p(".openclaw-victim/deep")), Err(FsError::Io(why)) if why.contains("deep")));
    denied(f.fs.list_archive(f.p(".openclaw-victim/logs")), "only archives");
    // A listing stops at its entry cap (here 5 of the 6 entries).
    let wide = f.home.join(".openclaw-victim/wide");
    for i in 0..3 {
        std::fs::create_dir_all(wide.join(format!("d{i}/f"))).unwrap();
    }
    let dir = Dir::open_ambient_dir(&wide, cap_std::ambient_authority()).unwrap();
    let mut out = Vec::new();
    let err = walk(&dir, "", &mut out, 5).unwrap_err();
    assert!(err.to_string().contains("more than 5 entries"), "{err}");
    assert_eq!(out.len(), 5);
}

#[test]
fn an_escape_is_told_apart_from_the_kernels_and_the_hosts_own_refusals() {
    let denied = io::ErrorKind::PermissionDenied;
    assert!(is_escape(&io::Error::new(denied, "cap-std's escape, whatever its wording")));
    assert!(!is_escape(&io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error())));
    assert!(!is_escape(&io::Error::new(denied, NotFollowed)));
    assert!(!is_escape(&io::Error::new(denied, RootRefused::LeadHome)));
}
