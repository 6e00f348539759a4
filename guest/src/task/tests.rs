use super::*;
use crate::testing::{MemFs, Node};
use serde_json::json;

const HOME: &str = "/home/u";
const LEAD: &str = "/home/u/.openclaw";

const LEAD_HANDLES: &[String] = &[];

fn env() -> TaskEnv<'static> {
    static HANDLES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TaskEnv { home: HOME, lead_home: LEAD, lead_handles: HANDLES.get_or_init(|| vec!["atlas".into(), "chief".into()]), resuming: false }
}

fn notes() -> Value {
    json!({
        "principalId": "0E8A1D2C-1111-4a2b-9c3d-123456789abc",
        "handle": "nova",
        "displayName": "Nova",
        "sesameApiKey": "sk_sesame_nova_0001",
        "llmProvider": "anthropic",
        "llmApiKey": null,
        "inheritCredentials": true,
        "model": "anthropic/claude-opus-4-6",
        "gatewayPort": 18930,
        "ocHomeDir": "~/.openclaw-nova",
        "familyId": "22222222-3333-4444-5555-666666666666",
        "familyName": "Example Family",
        "dmChannelId": "33333333-4444-5555-6666-777777777777",
        "onboardingChannelId": "44444444-5555-6666-7777-888888888888"
    })
}

fn whole_task(notes: &Value) -> Value {
    json!({
        "id": "task-42",
        "title": "Provision agent: Nova",
        "context": { "notes": notes.to_string() },
        "provisionedBy": { "id": "55555555-6666-7777-8888-999999999999", "handle": "@alex", "displayName": "Alex", "role": "owner" },
        "metadata": { "personalitySeed": "Curious and blunt." }
    })
}

fn parse_value(value: &Value) -> Result<Task, FieldError> {
    parse(&value.to_string(), &env(), &MemFs::new())
}

/// The error for the notes with `field` set to `value` (or removed, for `None`).
fn error_with(field: &str, value: Option<Value>) -> FieldError {
    let mut n = notes();
    match value {
        Some(v) => n[field] = v,
        None => {
            n.as_object_mut().unwrap().remove(field);
        }
    }
    parse_value(&n).expect_err("should be rejected")
}

fn assert_field(error: FieldError, field: &str, needle: &str) {
    assert_eq!(error.field, field, "{error:?}");
    assert!(error.message.contains(needle), "{:?} should mention {needle:?}", error.message);
}

#[test]
fn a_whole_task_maps_every_field() {
    let task = parse_value(&whole_task(&notes())).unwrap();
    assert_eq!(task.task_id.as_deref(), Some("task-42"));
    assert_eq!(task.principal_id, "0e8a1d2c-1111-4a2b-9c3d-123456789abc");
    assert_eq!(task.handle, "nova");
    assert_eq!(task.display_name, "Nova");
    assert_eq!(task.sesame_api_key.expose(), "sk_sesame_nova_0001");
    assert_eq!(task.provider, Provider::Anthropic);
    assert!(task.llm_api_key.is_none() && task.inherit_credentials);
    assert_eq!(task.model.as_deref(), Some("anthropic/claude-opus-4-6"));
    assert_eq!(task.gateway_port, 18930);
    assert_eq!(task.oc_home, "/home/u/.openclaw-nova");
    assert_eq!(task.family_id, "22222222-3333-4444-5555-666666666666");
    assert_eq!(task.family_name, "Example Family");
    assert_eq!(task.dm_channel_id.as_deref(), Some("33333333-4444-5555-6666-777777777777"));
    assert_eq!(task.onboarding_channel_id.as_deref(), Some("44444444-5555-6666-7777-888888888888"));
    let human = task.human.unwrap();
    assert_eq!(human.principal_id, "55555555-6666-7777-8888-999999999999");
    assert_eq!((human.handle.as_deref(), human.name.as_deref(), human.role.as_deref()), (Some("alex"), Some("Alex"), Some("owner")));
    assert_eq!(task.personality_seed.as_deref(), Some("Curious and blunt."));
}

#[test]
fn the_notes_object_alone_is_accepted() {
    let task = parse_value(&notes()).unwrap();
    assert_eq!(task.handle, "nova");
    assert!(task.task_id.is_none() && task.human.is_none());
}

#[test]
fn the_notes_string_alone_is_accepted() {
    let task = parse_value(&Value::String(notes().to_string())).unwrap();
    assert_eq!(task.gateway_port, 18930);
}

#[test]
fn notes_already_an_object_inside_a_task_are_accepted() {
    let mut task = whole_task(&notes());
    task["context"]["notes"] = notes();
    assert_eq!(parse_value(&task).unwrap().task_id.as_deref(), Some("task-42"));
}

#[test]
fn field_paths_follow_the_input_shape() {
    let mut n = notes();
    n["handle"] = json!("Bad");
    assert_eq!(parse_value(&whole_task(&n)).unwrap_err().field, "context.notes.handle");
    assert_eq!(parse_value(&n).unwrap_err().field, "handle");
}

#[test]
fn debug_output_never_shows_keys() {
    let mut n = notes();
    n["llmApiKey"] = json!("sk-ant-secret-llm-key-0001");
    let task = parse_value(&n).unwrap();
    let shown = format!("{task:?}");
    assert!(!shown.contains("sk_sesame_nova_0001") && !shown.contains("sk-ant-secret-llm-key-0001"), "{shown}");
}

#[test]
fn input_that_is_too_large_is_refused() {
    let big = format!("\"{}\"", "x".repeat(MAX_TASK_BYTES));
    assert_field(parse(&big, &env(), &MemFs::new()).unwrap_err(), "task", "limit is 1 MiB");
}

#[test]
fn input_that_is_not_json_names_the_position() {
    assert_field(parse("{\"handle\": ", &env(), &MemFs::new()).unwrap_err(), "task", "line 1");
}

#[test]
fn deeply_nested_input_is_refused_without_panicking() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    assert_field(parse(&deep, &env(), &MemFs::new()).unwrap_err(), "task", "nested too deeply");
}

#[test]
fn a_notes_string_that_is_not_json_is_a_notes_error() {
    let mut task = whole_task(&notes());
    task["context"]["notes"] = json!("{not json");
    assert_field(parse_value(&task).unwrap_err(), "context.notes", "not valid JSON");
    assert_field(parse_value(&json!("{not json")).unwrap_err(), "notes", "not valid JSON");
}

#[test]
fn notes_of_the_wrong_kind_are_refused() {
    let mut task = whole_task(&notes());
    task["context"]["notes"] = json!(42);
    assert_field(parse_value(&task).unwrap_err(), "context.notes", "not a number");
    assert_field(parse_value(&json!([1])).unwrap_err(), "task", "not an array");
    assert_field(parse_value(&json!({"context": {}})).unwrap_err(), "context.notes", "required");
}

#[test]
fn handles_must_be_short_lowercase_slugs() {
    for bad in ["../x", "a/b", ".", "..", "x\n", "x<y>", "Nova", "no va", "-x", "_x", "", "nоva", "ｎova", "a.b"] {
        let error = error_with("handle", Some(json!(bad)));
        assert_eq!(error.field, "handle", "{bad:?}: {error:?}");
    }
    assert_field(error_with("handle", Some(json!("a".repeat(33)))), "handle", "at most 32");
    assert_field(error_with("handle", Some(json!("nоva"))), "handle", "non-ASCII");
    assert_field(error_with("handle", Some(json!("x\n"))), "handle", "U+000A");
}

#[test]
fn reserved_and_lead_handles_are_refused() {
    for reserved in ["archives", "gateway", "gateway-work", "default", "dev"] {
        assert_field(error_with("handle", Some(json!(reserved))), "handle", "reserved");
    }
    for lead in ["atlas", "chief"] {
        assert_field(error_with("handle", Some(json!(lead))), "handle", "lead's own handle");
    }
}

#[test]
fn valid_handles_pass() {
    for good in ["a", "nova-2", "x_y", "0day", &"a".repeat(32)] {
        assert!(validate_handle(good, LEAD_HANDLES).is_ok(), "{good}");
    }
}

#[test]
fn required_fields_are_named() {
    for field in ["principalId", "handle", "displayName", "sesameApiKey", "llmProvider", "gatewayPort", "familyId", "familyName"] {
        assert_field(error_with(field, None), field, "required");
    }
}

#[test]
fn display_names_reject_control_characters_but_keep_markup() {
    assert_field(error_with("displayName", Some(json!("No\nva"))), "displayName", "control characters");
    assert_field(error_with("displayName", Some(json!("   "))), "displayName", "must not be empty");
    assert_field(error_with("displayName", Some(json!("x".repeat(65)))), "displayName", "at most 64");
    let mut n = notes();
    n["displayName"] = json!("<b>{{HANDLE}}</b> & {x}");
    assert_eq!(parse_value(&n).unwrap().display_name, "<b>{{HANDLE}}</b> & {x}");
}

#[test]
fn uuids_are_checked_and_lowercased() {
    for field in ["principalId", "familyId", "dmChannelId", "onboardingChannelId"] {
        for bad in [json!("not-a-uuid"), json!("0e8a1d2c11114a2b9c3d123456789abc"), json!("0e8a1d2c-1111-4a2b-9c3d-123456789abz"), json!(7)] {
            assert_eq!(error_with(field, Some(bad.clone())).field, field, "{field} {bad}");
        }
    }
    let mut n = notes();
    n.as_object_mut().unwrap().remove("dmChannelId");
    n["onboardingChannelId"] = Value::Null;
    let task = parse_value(&n).unwrap();
    assert!(task.dm_channel_id.is_none() && task.onboarding_channel_id.is_none());
}

#[test]
fn keys_are_checked_without_quoting_them() {
    for bad in ["short", "has space inside", "line\nbreak-12345", "ключ-12345678"] {
        let error = error_with("sesameApiKey", Some(json!(bad)));
        assert_eq!(error.field, "sesameApiKey");
        assert!(!error.message.contains(bad), "{:?}", error.message);
    }
    assert_field(error_with("llmApiKey", Some(json!("x1".repeat(257)))), "llmApiKey", "16 to 512");
    assert_field(error_with("sesameApiKey", Some(json!(12345678))), "sesameApiKey", "must be a string");
}

#[test]
fn providers_are_exact() {
    for bad in ["Anthropic", "gemini", "", "openai "] {
        assert_field(error_with("llmProvider", Some(json!(bad))), "llmProvider", "not one of");
    }
    for (text, provider) in [("openrouter", Provider::OpenRouter), ("openai", Provider::OpenAi)] {
        let mut n = notes();
        n["llmProvider"] = json!(text);
        assert_eq!(parse_value(&n).unwrap().provider, provider);
        assert_eq!(provider.as_str(), text);
    }
    assert_eq!(Provider::OpenRouter.env_var(), "OPENROUTER_API_KEY");
}

#[test]
fn a_key_is_required_when_not_inheriting() {
    let mut n = notes();
    n["inheritCredentials"] = json!(false);
    assert_field(parse_value(&n).unwrap_err(), "llmApiKey", "inheritCredentials is false");
    n["llmApiKey"] = json!("sk-ant-0123456789");
    assert_eq!(parse_value(&n).unwrap().llm_api_key.unwrap().expose(), "sk-ant-0123456789");
    assert_field(error_with("inheritCredentials", Some(json!("yes"))), "inheritCredentials", "true or false");
    let mut n = notes();
    n.as_object_mut().unwrap().remove("inheritCredentials");
    assert!(parse_value(&n).unwrap().inherit_credentials, "inheriting is the default");
}

#[test]
fn model_names_have_a_strict_charset() {
    for bad in ["$(rm -rf /)", "a;b", "`id`", "a b", "-flag", "x|y", "a\nb"] {
        assert_eq!(error_with("model", Some(json!(bad))).field, "model", "{bad:?}");
    }
    for good in ["openrouter/anthropic/claude-3.5:beta", "gpt-4o@2024", "o1+x"] {
        let mut n = notes();
        n["model"] = json!(good);
        assert_eq!(parse_value(&n).unwrap().model.as_deref(), Some(good));
    }
    let mut n = notes();
    n.as_object_mut().unwrap().remove("model");
    assert!(parse_value(&n).unwrap().model.is_none());
}

#[test]
fn ports_must_be_integers_in_range() {
    for bad in [json!(0), json!(80), json!(1023), json!(65536), json!(-1), json!(18930.5), json!("18930"), json!(true)] {
        assert_eq!(error_with("gatewayPort", Some(bad.clone())).field, "gatewayPort", "{bad}");
    }
    for good in [1024, 65535] {
        let mut n = notes();
        n["gatewayPort"] = json!(good);
        assert_eq!(parse_value(&n).unwrap().gateway_port, good as u16);
    }
}

#[test]
fn family_names_are_plain_text() {
    assert_field(error_with("familyName", Some(json!("a\u{0}b"))), "familyName", "control");
    assert_field(error_with("familyName", Some(json!("x".repeat(129)))), "familyName", "at most 128");
}

#[test]
fn the_oc_home_must_be_the_handles_own() {
    for (given, needle) in [
        ("~/.openclaw", "lead's own home"),
        ("/home/u/.openclaw/", "lead's own home"),
        ("/", "must be ~/.openclaw-nova"),
        ("~/.ssh", "must be ~/.openclaw-nova"),
        ("~/.openclaw-other", "must be ~/.openclaw-nova"),
        ("/home/u/.openclaw-nova/../.ssh", "`..`"),
        ("/home/u/./.openclaw-nova", "`.`"),
        ("relative/.openclaw-nova", "not an absolute path"),
        ("~root/.openclaw-nova", "~user"),
    ] {
        assert_field(error_with("ocHomeDir", Some(json!(given))), "ocHomeDir", needle);
    }
    for good in ["~/.openclaw-nova", "/home/u/.openclaw-nova/", "/home/u//.openclaw-nova"] {
        let mut n = notes();
        n["ocHomeDir"] = json!(good);
        assert_eq!(parse_value(&n).unwrap().oc_home, "/home/u/.openclaw-nova", "{good}");
    }
    let mut n = notes();
    n.as_object_mut().unwrap().remove("ocHomeDir");
    assert_eq!(parse_value(&n).unwrap().oc_home, "/home/u/.openclaw-nova");
}

#[test]
fn an_existing_home_or_symlink_is_refused() {
    let fs = MemFs::new();
    fs.add_dir("/home/u/.openclaw-nova");
    let error = parse(&notes().to_string(), &env(), &fs).unwrap_err();
    assert_field(error, "handle", "already exists (a home for this handle)");
    let fs = MemFs::new();
    fs.nodes.borrow_mut().insert("/home/u/.openclaw-nova".into(), Node::Symlink { target: "/etc".into() });
    assert_field(parse(&notes().to_string(), &env(), &fs).unwrap_err(), "handle", "as a symlink");
    let fs = MemFs::new();
    fs.denied.borrow_mut().push("/home/u/.openclaw-nova".into());
    assert_field(parse(&notes().to_string(), &env(), &fs).unwrap_err(), "handle", "host refused");
    let fs = MemFs::new();
    fs.add_dir("/home/u/.openclaw-nova");
    let resuming = TaskEnv { resuming: true, ..env() };
    assert!(parse(&notes().to_string(), &resuming, &fs).is_ok(), "a resumed provision finds its own home");
}

#[test]
fn the_human_may_be_a_uuid_or_an_object() {
    let mut task = whole_task(&notes());
    task["provisionedBy"] = json!("55555555-6666-7777-8888-999999999999");
    assert_eq!(parse_value(&task).unwrap().human.unwrap().principal_id, "55555555-6666-7777-8888-999999999999");
    task["provisionedBy"] = json!({ "principalId": "55555555-6666-7777-8888-999999999999", "name": "Alex" });
    assert_eq!(parse_value(&task).unwrap().human.unwrap().name.as_deref(), Some("Alex"));
    for bad in [json!("alex"), json!({"handle": "alex"}), json!({"id": "x"}), json!(5), json!({"id": "55555555-6666-7777-8888-999999999999", "name": "A\nB"})] {
        task["provisionedBy"] = bad.clone();
        assert_eq!(parse_value(&task).unwrap_err().field, "provisionedBy", "{bad}");
    }
}

#[test]
fn task_ids_are_url_safe() {
    let mut task = whole_task(&notes());
    for bad in [json!("../admin"), json!("a b"), json!(""), json!("x".repeat(65)), json!(12)] {
        task["id"] = bad.clone();
        assert_eq!(parse_value(&task).unwrap_err().field, "id", "{bad}");
    }
}

#[test]
fn the_personality_seed_comes_from_metadata_or_notes() {
    let mut n = notes();
    n["personalitySeed"] = json!("Warm.");
    assert_eq!(parse_value(&n).unwrap().personality_seed.as_deref(), Some("Warm."));
    let task = whole_task(&n);
    assert_eq!(parse_value(&task).unwrap().personality_seed.as_deref(), Some("Curious and blunt."), "the task's metadata wins");
    let mut task = whole_task(&notes());
    task["metadata"]["personalitySeed"] = json!(3);
    assert_field(parse_value(&task).unwrap_err(), "metadata.personalitySeed", "must be a string");
}

#[test]
fn unknown_fields_are_ignored() {
    let mut n = notes();
    n["somethingNew"] = json!({"nested": true});
    assert!(parse_value(&n).is_ok());
}
