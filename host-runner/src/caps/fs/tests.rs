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
    /// The run's claims, which `write-credentials` follows.
    family: crate::caps::family::FamilyCap,
}

impl Fixture {
    fn new() -> Self {
        Self::running("provision")
    }

    /// The capability of a run of `command`.
    fn running(command: &'static str) -> Self {
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
        let scope = crate::caps::family::LockScope::OnDemand;
        let family = crate::caps::family::FamilyCap::new(&home.join(".openclaw"), scope, command, std::time::Duration::ZERO, None, vec!["chief".into()], audit.clone());
        let plugins = LeadPlugins::found(&home.join(".openclaw"), &["sesame".into()], &["sesame".into()], "https://api.sesame.space");
        let lead_env = crate::lead::lead_env::LeadEnv::read(&home.join(".openclaw"), []).unwrap();
        let keys = LeadKeys::find(&home.join(".openclaw"), &lead_env).unwrap();
        let fs = FsCap::new(grants, audit, Secret::new(LEAD_KEY), plugins, keys).writing_credentials(command, family.claimed());
        Self { _temp: temp, home, outside, fs, family }
    }

    /// Claims `handle` for the run, as the component does through `family.claim`.
    fn claim(&mut self, handle: &str) {
        crate::runtime::bindings::openclaw::provisioner::family::Host::claim(&mut self.family, handle.into()).unwrap();
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
    f.claim("victim");
    let before = f.snapshot();
    denied(f.fs.write_atomic(f.p(".ssh/authorized_keys"), b"evil".to_vec(), 0o600), "outside every grant");
    denied(f.fs.write_atomic(f.p(".openclaw/workspace/USER.md"), b"".to_vec(), 0o644), "does not allow writing");
    denied(f.fs.create_dir_all(f.p(".openclaw/evil"), 0o700), "only its workspace notes");
    denied(f.fs.remove_tree(f.p(".openclaw/workspace")), "only its workspace notes");
    denied(f.fs.archive_tree(f.p(".openclaw-victim"), f.p(".openclaw/a.tar.gz")), "only its workspace notes");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/../.ssh/authorized_keys"), b"evil".to_vec(), 0o600), "`..`");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/./x"), b"evil".to_vec(), 0o600), "`.`");
    denied(f.fs.write_atomic(".openclaw-victim/x".into(), b"evil".to_vec(), 0o600), "absolute");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/escape/pwned"), b"evil".to_vec(), 0o644), "not on the list");
    symlink(&f.outside, f.home.join(".openclaw-victim/workspace")).unwrap();
    denied(f.fs.write_atomic(f.p(".openclaw-victim/workspace/AGENTS.md"), b"evil".to_vec(), 0o644), "outside the grant");
    std::fs::remove_file(f.home.join(".openclaw-victim/workspace")).unwrap();
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
    f.claim("victim");
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
    f.claim("trap");
    symlink(&f.outside, f.home.join(".openclaw-trap")).unwrap();
    denied(f.fs.read(f.p(".openclaw-trap/secret.txt")), "not a sibling home this host created");
    // A sibling the host made that turns its home into a link.
    f.fs.grants.state().claim_home("trap", &f.home.join(".openclaw")).unwrap();
    denied(f.fs.read(f.p(".openclaw-trap/secret.txt")), "is a symlink; not following it");
    denied(f.fs.write_atomic(f.p(".openclaw-trap/workspace/AGENTS.md"), b"evil".to_vec(), 0o600), "is a symlink; not following it");
    let m = f.fs.metadata(f.p(".openclaw-trap")).unwrap().unwrap();
    assert_eq!(m.kind, EntryKind::Symlink);
    // Not archived (it cannot be): the link goes only at the operator's word, never its target.
    denied(f.fs.remove_tree(f.p(".openclaw-trap")), "only after this run archived it");
    let (trap, outside) = (f.p(".openclaw-trap"), f.outside.clone());
    let mut fs = f.fs.without_archive(Some("trap".into()));
    fs.remove_tree(trap.clone()).unwrap();
    assert!(std::fs::symlink_metadata(&trap).is_err());
    assert!(outside.join("secret.txt").exists(), "the target survives");
}

#[test]
fn the_leads_key_never_leaves_through_files() {
    let mut f = Fixture::new();
    f.claim("victim");
    for secret in [".openclaw/openclaw.json", ".openclaw/.env", ".openclaw/agents/main/agent/auth-profiles.json", ".openclaw/credentials/x.json"] {
        denied(f.fs.read(f.p(secret)), "only its workspace notes");
        denied(f.fs.metadata(f.p(secret)), "only its workspace notes");
    }
    assert_eq!(f.fs.read(f.p(".openclaw/workspace/USER.md")).unwrap(), b"Alex\n");
    for key in [LEAD_KEY, LEAD_LLM_KEY] {
        std::fs::write(f.home.join(".openclaw/workspace/TOOLS.md"), format!("key: {key}\n")).unwrap();
        denied(f.fs.read(f.p(".openclaw/workspace/TOOLS.md")), "holds a key the host registered");
        std::fs::write(f.home.join(".openclaw/skills/sesame/config.txt"), key).unwrap();
        denied(f.fs.copy_lead_plugins("victim".into()), "holds a key the host registered");
        assert!(!Path::new(&f.p(".openclaw-victim/skills/sesame")).exists(), "a refused copy leaves nothing behind");
    }
}

#[test]
fn only_listed_places_and_a_checked_config_go_into_a_sibling_home() {
    let mut f = Fixture::new();
    f.claim("victim");
    let before = f.snapshot();
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/extensions/evil"), 0o700), "not on the list");
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/workspace/skills"), 0o700), "not on the list");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/hooks"), b"x".to_vec(), 0o600), "not on the list");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/node-host/x.js"), b"x".to_vec(), 0o600), "not on the list");
    denied(f.fs.create_dir_all(f.p(".openclaw-victim/Extensions/x"), 0o700), "not on the list");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/.ENV"), b"NODE_OPTIONS=x".to_vec(), 0o600), "only in case");
    denied(f.fs.write_atomic(f.p(".openclaw-victim/OPENCLAW.JSON"), b"{}".to_vec(), 0o600), "only in case");
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
    f.claim("victim");
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
    f.claim("nova");
    let root = f.p(".openclaw-nova");
    assert_eq!(f.fs.metadata(root.to_owned()).unwrap(), None);
    f.fs.create_dir_all(f.p(".openclaw-nova/agents/main/agent"), 0o700).unwrap();
    for dir in [".openclaw-nova", ".openclaw-nova/agents", ".openclaw-nova/agents/main/agent"] {
        assert_eq!(mode(&f.p(dir)), 0o700, "{dir}");
    }
    f.fs.create_dir_all(f.p(".openclaw-nova/workspace/memory"), 0o700).unwrap();
    f.fs.write_atomic(f.p(".openclaw-nova/workspace/memory/notes.md"), b"ANTHROPIC_API_KEY=x\n".to_vec(), 0o600).unwrap();
    assert!(f.fs.grants.state().sibling("nova", &f.home.join(".openclaw")).is_some(), "creating the home recorded it");
    f.fs.write_atomic(f.p(".openclaw-nova/workspace/AGENTS.md"), b"hi".to_vec(), 0o644).unwrap();
    assert_eq!(mode(&f.p(".openclaw-nova/workspace/memory/notes.md")), 0o600);
    assert_eq!(mode(&f.p(".openclaw-nova/workspace/AGENTS.md")), 0o644);
    assert_eq!(f.fs.read(f.p(".openclaw-nova/workspace/memory/notes.md")).unwrap(), b"ANTHROPIC_API_KEY=x\n");
    let m = f.fs.metadata(f.p(".openclaw-nova/workspace/memory/notes.md")).unwrap().unwrap();
    assert_eq!((m.kind, m.size, m.mode), (EntryKind::File, 20, 0o600));
    let tree = ["agents/", "agents/main/", "agents/main/agent/", "workspace/", "workspace/AGENTS.md", "workspace/memory/", "workspace/memory/notes.md"];
    assert_eq!(f.fs.walk_tree(root.to_owned()).unwrap(), tree);
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
    f.claim("nova");
    f.fs.create_dir_all(f.p(".openclaw-nova/workspace"), 0o700).unwrap();
    f.fs.write_atomic(f.p(".openclaw-nova/workspace/USER.md"), b"up\n".to_vec(), 0o600).unwrap();
    f.fs.create_dir_all(f.p(".openclaw-archives"), 0o700).unwrap();
    let archive = f.p(".openclaw-archives/nova-20261125-102030.tar.gz");
    let stats = f.fs.archive_tree(f.p(".openclaw-nova"), archive.to_owned()).unwrap();
    assert_eq!((stats.files, stats.directories, stats.bytes), (1, 2, 3));
    assert_eq!(mode(&archive), 0o600);
    assert_eq!(f.fs.list_archive(archive.to_owned()).unwrap(), [".openclaw-nova/", ".openclaw-nova/workspace/", ".openclaw-nova/workspace/USER.md"]);
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
    f.claim("victim");
    assert!(matches!(f.fs.read(f.p(".openclaw/workspace/TOOLS.md")), Err(FsError::NotFound(_))));
    assert!(matches!(f.fs.read(f.p(".openclaw-ghost/x")), Err(FsError::NotFound(_))));
    assert_eq!(f.fs.metadata(f.p(".openclaw-ghost/x")).unwrap(), None);
    assert!(matches!(f.fs.write_atomic(f.p(".openclaw-victim/workspace/memory/no/such.md"), b"x".to_vec(), 0o600), Err(FsError::NotFound(_))));
    assert!(matches!(f.fs.read(f.p(".openclaw-victim/logs")), Err(FsError::Io(_))), "a directory is not a file");
}

#[test]
fn credentials_are_written_by_the_host_with_the_leads_key_for_one_provider_only() {
    let mut f = Fixture::new();
    f.claim("nova");
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
    assert!(matches!(f.fs.walk_tree(f.p(".openclaw-victim/deep")), Err(FsError::Denied(why)) if why.contains("deep") && why.contains("(a walk cap)")));
    denied(f.fs.list_archive(f.p(".openclaw-victim/logs")), "only archives");
    // A listing stops at its entry cap (here 5 of the 6 entries).
    let wide = f.home.join(".openclaw-victim/wide");
    for i in 0..3 {
        std::fs::create_dir_all(wide.join(format!("d{i}/f"))).unwrap();
    }
    let dir = Dir::open_ambient_dir(&wide, cap_std::ambient_authority()).unwrap();
    let mut out = Vec::new();
    let err = walk(&dir, &mut out, WalkCaps { entries: 5, bytes: MAX_WALK_BYTES }).unwrap_err();
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

#[test]
fn a_sibling_home_is_removed_only_once_this_run_archived_or_made_it_or_at_the_operators_word() {
    let mut f = Fixture::new();
    f.claim("victim");
    let victim = f.p(".openclaw-victim");
    // Made for this lead by an earlier run: not removable as it is.
    denied(f.fs.remove_tree(victim.clone()), "only after this run archived it (fs.archive-tree) or made it, or at the operator's `deprovision victim --without-archive`");
    // Neither a check nor an archive of a part of it is an archive of it.
    let checked = f.fs.check_archivable(victim.clone()).unwrap();
    f.fs.create_dir_all(f.p(".openclaw-archives"), 0o700).unwrap();
    f.fs.archive_tree(f.p(".openclaw-victim/logs"), f.p(".openclaw-archives/logs.tar.gz")).unwrap();
    denied(f.fs.remove_tree(victim.clone()), "only after this run archived it");
    assert!(Path::new(&victim).is_dir());
    let archived = f.fs.archive_tree(victim.clone(), f.p(".openclaw-archives/victim.tar.gz")).unwrap();
    assert_eq!((checked.files, checked.directories, checked.bytes), (archived.files, archived.directories, archived.bytes));
    f.fs.remove_tree(victim.clone()).unwrap();
    assert!(!Path::new(&victim).exists());
    // A home this run made may go (a failed provision's), as may the operator's choice.
    let mut f = Fixture::new();
    f.claim("nova");
    f.fs.create_dir_all(f.p(".openclaw-nova/workspace"), 0o700).unwrap();
    f.fs.remove_tree(f.p(".openclaw-nova")).unwrap();
    let mut f = Fixture::new();
    f.claim("victim");
    let (victim, work) = (f.p(".openclaw-victim"), f.p(".openclaw-work"));
    let mut fs = f.fs.without_archive(Some("victim".into()));
    denied(fs.remove_tree(work), "another OpenClaw profile");
    fs.remove_tree(victim.clone()).unwrap();
    assert!(!Path::new(&victim).exists());
}

#[test]
fn check_archivable_walks_only_sibling_homes_and_names_what_an_archive_refuses() {
    let mut f = Fixture::new();
    denied(f.fs.check_archivable(f.p(".openclaw")), "only its workspace notes");
    denied(f.fs.check_archivable(f.p(".openclaw/agent-provisioner")), "only a sibling home can be walked or archived");
    denied(f.fs.check_archivable(f.p(".openclaw-work")), "another OpenClaw profile");
    rustix::fs::mknodat(rustix::fs::CWD, f.home.join(".openclaw-victim/logs/pipe"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
    let err = f.fs.check_archivable(f.p(".openclaw-victim")).unwrap_err();
    assert!(matches!(&err, FsError::Io(m) if m.ends_with("logs/pipe is a FIFO, which an archive does not hold")), "{err:?}");
}

#[test]
fn no_key_is_read_from_any_grant_wherever_the_host_put_it() {
    let mut f = Fixture::new();
    f.claim("victim");
    crate::sys::secret::register(&Secret::new(LEAD_LLM_KEY).unwrap());
    let victim = f.home.join(".openclaw-victim");
    std::fs::create_dir_all(victim.join("agents/main/agent")).unwrap();
    std::fs::create_dir_all(victim.join("credentials")).unwrap();
    std::fs::create_dir_all(victim.join("workspace/memory")).unwrap();
    std::fs::write(victim.join(".env"), "OPENAI_API_KEY=sk-sibling-own-1\n").unwrap();
    std::fs::write(victim.join("agents/main/agent/auth-profiles.json"), "{\"key\": \"sk-sibling-own-2\"}").unwrap();
    std::fs::write(victim.join("credentials/oauth.json"), "{}").unwrap();
    std::fs::write(victim.join("workspace/memory/innocent.md"), format!("see {LEAD_LLM_KEY}\n")).unwrap();
    crate::sys::secret::register(&Secret::new("a-registered-db-password-0001").unwrap());
    std::fs::write(victim.join("workspace/memory/db.md"), "postgres: a-registered-db-password-0001\n").unwrap();
    for (path, rule) in [
        (".openclaw-victim/.env", "a .env file holds keys"),
        (".openclaw-victim/agents/main/agent/auth-profiles.json", "auth*.json holds keys"),
        (".openclaw-victim/credentials/oauth.json", "credentials/ holds keys"),
        (".openclaw-victim/workspace/memory/innocent.md", "holds a key the host registered"),
        (".openclaw-victim/workspace/memory/db.md", "holds a key the host registered"),
    ] {
        denied(f.fs.read(f.p(path)), rule);
    }
    std::fs::create_dir_all(f.home.join(".openclaw-archives")).unwrap();
    std::fs::write(f.home.join(".openclaw-archives/victim-1.tar.gz"), b"\x1f\x8b").unwrap();
    std::fs::write(f.home.join(".openclaw-archives/victim-1.member.json"), b"{}").unwrap();
    denied(f.fs.read(f.p(".openclaw-archives/victim-1.tar.gz")), "reads only member records");
    assert_eq!(f.fs.read(f.p(".openclaw-archives/victim-1.member.json")).unwrap(), b"{}");
    // An archive written where the component can read it back.
    for to in [".openclaw/agent-provisioner/victim.member.json", ".openclaw-archives/victim.member.json", ".openclaw-victim/workspace/memory/a.tar.gz"] {
        std::fs::create_dir_all(f.home.join(".openclaw/agent-provisioner")).unwrap();
        denied(f.fs.archive_tree(f.p(".openclaw-victim"), f.p(to)), "only as *.tar.gz in the archives grant");
    }
}

#[test]
fn a_hard_link_in_a_sibling_home_is_neither_read_nor_archived() {
    let mut f = Fixture::new();
    std::fs::create_dir_all(f.home.join(".openclaw-victim/workspace")).unwrap();
    std::fs::hard_link(f.home.join(".openclaw/.env"), f.home.join(".openclaw-victim/workspace/USER.md")).unwrap();
    std::fs::hard_link(f.home.join(".openclaw/workspace/USER.md"), f.home.join(".openclaw-victim/workspace/TOOLS.md")).unwrap();
    denied(f.fs.read(f.p(".openclaw-victim/workspace/USER.md")), "has 2 hard links");
    denied(f.fs.read(f.p(".openclaw-victim/workspace/TOOLS.md")), "has 2 hard links");
    std::fs::create_dir_all(f.home.join(".openclaw-archives")).unwrap();
    let archive = f.p(".openclaw-archives/victim-1.tar.gz");
    denied(f.fs.archive_tree(f.p(".openclaw-victim"), archive.clone()), ".openclaw-victim/workspace/TOOLS.md has 2 hard links");
    assert!(!Path::new(&archive).exists());
    assert_eq!(std::fs::read_dir(f.home.join(".openclaw-archives")).unwrap().count(), 0, "no temporary file is left");
}

#[test]
fn credentials_go_only_into_the_home_of_the_sibling_the_run_claimed() {
    let mut f = Fixture::new();
    denied(f.fs.write_credentials("nova".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "this run has claimed no sibling");
    f.claim("nova");
    f.fs.create_dir_all(f.p(".openclaw-nova"), 0o700).unwrap();
    denied(f.fs.write_credentials("victim".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "this run works on nova");
    std::fs::create_dir_all(f.home.join(".openclaw-archives")).unwrap();
    denied(f.fs.write_credentials("archives".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "\"archives\" is not a sibling handle");
    denied(f.fs.write_credentials("nova/workspace".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "not a sibling handle");
    assert!(!f.home.join(".openclaw-victim/.env").exists() && !f.home.join(".openclaw-archives/.env").exists());
    f.fs.write_credentials("nova".into(), "anthropic".into(), CredentialLayout::EnvFile, None).unwrap();
    for command in ["list", "health", "deprovision", "adopt", "plan"] {
        let mut f = Fixture::running(command);
        f.claim("victim");
        denied(f.fs.write_credentials("victim".into(), "anthropic".into(), CredentialLayout::EnvFile, None), "only in provision and restore");
        assert!(!f.home.join(".openclaw-victim/.env").exists(), "{command}");
    }
}

#[test]
fn a_run_writes_within_its_byte_and_entry_budget() {
    let mut f = Fixture::new();
    f.claim("victim");
    let p = |rel: &str| format!("{}/{rel}", f.home.display());
    std::fs::create_dir_all(f.home.join(".openclaw-victim/workspace/memory")).unwrap();
    let at = |rel: &str| p(&format!(".openclaw-victim/workspace/memory/{rel}"));
    let (file, more, dirs, over) = (at("a.md"), at("b.md"), at("x/y"), at("z"));
    let mut fs = f.fs.with_write_budget(Written { bytes: 10, entries: 3 });
    fs.write_atomic(file.clone(), b"123456".to_vec(), 0o600).unwrap();
    fs.write_atomic(file.clone(), b"7890".to_vec(), 0o600).unwrap();
    denied(fs.write_atomic(more.clone(), b"1".to_vec(), 0o600), "write budget of 0 MiB per run is spent (10 bytes written, 1 more asked)");
    fs.create_dir_all(dirs.clone(), 0o700).unwrap();
    fs.create_dir_all(dirs.clone(), 0o700).unwrap();
    denied(fs.create_dir_all(over.clone(), 0o700), "budget of 3 new entries per run is spent (3 created)");
    denied(fs.write_atomic(more.clone(), Vec::new(), 0o600), "budget of 3 new entries");
    assert!(!Path::new(&more).exists() && !Path::new(&over).exists());
    assert_eq!(std::fs::read(&file).unwrap(), b"7890", "a file written over is not a new entry");
}

#[test]
fn archives_and_member_records_are_create_only() {
    let mut f = Fixture::new();
    std::fs::create_dir_all(f.home.join(".openclaw-archives")).unwrap();
    let old = f.p(".openclaw-archives/nova-1");
    std::fs::write(format!("{old}.tar.gz"), "the only copy").unwrap();
    std::fs::write(format!("{old}.member.json"), "{}").unwrap();
    let before = f.snapshot();
    denied(f.fs.remove_tree(format!("{old}.tar.gz")), "create-only for the component");
    denied(f.fs.remove_tree(format!("{old}.member.json")), "create-only for the component");
    denied(f.fs.write_atomic(format!("{old}.member.json"), b"{\"handle\":\"evil\"}".to_vec(), 0o600), "exists: archives and member records are create-only");
    denied(f.fs.write_atomic(format!("{old}.tar.gz"), b"x".to_vec(), 0o600), "only member records");
    denied(f.fs.write_atomic(f.p(".openclaw-archives/nova-2.tar.gz"), b"forged".to_vec(), 0o600), "archives are made by archive-tree");
    assert!(matches!(f.fs.archive_tree(f.p(".openclaw-victim"), format!("{old}.tar.gz")), Err(FsError::AlreadyExists(_))));
    assert_eq!(f.snapshot(), before, "nothing in the archives changed");
    f.fs.write_atomic(f.p(".openclaw-archives/nova-2.member.json"), b"{}".to_vec(), 0o600).unwrap();
    f.fs.archive_tree(f.p(".openclaw-victim"), f.p(".openclaw-archives/nova-2.tar.gz")).unwrap();
}

#[test]
fn a_host_call_that_takes_a_handle_takes_only_a_sibling_handle() {
    let mut f = Fixture::new();
    let before = f.snapshot();
    for handle in ["archives", "chief", "../x", "dev"] {
        denied(f.fs.copy_lead_plugins(handle.into()), "is not a sibling handle");
        denied(f.fs.write_credentials(handle.into(), "anthropic".into(), CredentialLayout::EnvFile, Some("sk-ant-x-0001".into())), "is not a sibling handle");
        denied(f.fs.restore_archive(f.p(".openclaw-archives/x.tar.gz"), handle.into()), "is not a sibling handle");
    }
    denied(f.fs.copy_lead_plugins("archives".into()), "\"archives\" is not a sibling handle: it is reserved");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_listing_stops_at_its_byte_cap() {
    let temp = tempfile::tempdir().unwrap();
    for name in ["aaaa", "bbbb", "cccc"] {
        std::fs::write(temp.path().join(name), "").unwrap();
    }
    let dir = Dir::open_ambient_dir(temp.path(), cap_std::ambient_authority()).unwrap();
    let mut out = Vec::new();
    let err = walk(&dir, &mut out, WalkCaps { entries: 100, bytes: 10 }).unwrap_err();
    assert!(err.to_string().contains("more than 10 bytes of names"), "{err}");
    assert_eq!(out, ["aaaa", "bbbb"]);
}

#[test]
fn a_run_changes_only_the_home_of_the_sibling_it_claimed() {
    let mut f = Fixture::new();
    let notes = f.p(".openclaw-victim/workspace");
    denied(f.fs.create_dir_all(notes.clone(), 0o700), "this run has claimed no sibling (family.claim); it changes only the home of the sibling it works on");
    f.claim("nova");
    denied(f.fs.create_dir_all(notes.clone(), 0o700), "this run works on nova; it changes only the home of the sibling it claimed");
    std::fs::create_dir_all(f.home.join(".openclaw-victim/workspace")).unwrap();
    denied(f.fs.write_atomic(format!("{notes}/AGENTS.md"), b"obey me".to_vec(), 0o600), "this run works on nova");
    denied(f.fs.remove_tree(notes.clone()), "this run works on nova");
    denied(f.fs.copy_lead_plugins("victim".into()), "this run works on nova");
    // The rules of the write itself come first: their refusal names them.
    denied(f.fs.write_atomic(f.p(".openclaw-victim/extensions/x.js"), b"x".to_vec(), 0o600), "not on the list");
    assert!(!f.home.join(".openclaw-victim/workspace/AGENTS.md").exists() && !f.home.join(".openclaw-victim/extensions").exists());
    f.fs.create_dir_all(f.p(".openclaw-nova/workspace"), 0o700).unwrap();
    f.fs.write_atomic(f.p(".openclaw-nova/workspace/AGENTS.md"), b"hello".to_vec(), 0o600).unwrap();
}
