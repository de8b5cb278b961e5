//! `kiro-gateway account login` and `account import` as operators run them: the binary in a
//! child process, the fake Kiro in this one, the database in a temporary directory. The CLI
//! prints the code and the link, waits, asks for a profile on standard input when there are
//! several, and stores the account.

mod common;
mod tenancy_support;

use std::process::Stdio;
use std::time::Duration;

use kiro_gateway::fake_kiro::{FakeKiroConfig, FakeKiroHandle, FAKE_IDC_PROFILES};
use tenancy_support::{temp_dir, TempDir};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// `account list` on the test's database.
fn list(dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiro-gateway"));
    command
        .current_dir(&dir.0)
        .env_clear()
        .args(["account", "list"])
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.0.join("gw.db").display()),
        ])
        .args([
            "--secret-key-file",
            dir.0.join("secret.key").to_str().unwrap(),
        ]);
    command
}

fn command(fake: &FakeKiroHandle, dir: &TempDir, args: &[&str]) -> Command {
    let base = fake.base_url();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiro-gateway"));
    command
        .current_dir(&dir.0)
        .env_clear()
        .args(args)
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.0.join("gw.db").display()),
        ])
        .args([
            "--secret-key-file",
            dir.0.join("secret.key").to_str().unwrap(),
        ])
        .args([
            "--kiro-oidc-url",
            &base,
            "--kiro-desktop-auth-url",
            &base,
            "--kiro-api-url",
            &base,
        ])
        .args([
            "--kiro-profiles-url",
            &base,
            "--kiro-signin-url",
            &format!("{base}/signin"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads stdout lines until one contains `needle`; returns every line read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no `{needle}` in {seen:?}");
    seen
}

fn user_code(line: &str) -> String {
    line.split("enter the code ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned()
}

async fn finish(
    mut child: Child,
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> (bool, String, String) {
    let mut rest = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        tokio::io::AsyncReadExt::read_to_string(&mut err, &mut stderr)
            .await
            .unwrap();
    }
    (status.success(), rest, stderr)
}

#[tokio::test]
async fn builder_id_login_prints_the_code_waits_and_stores_the_account() {
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let mut child = command(
        &fake,
        &dir,
        &["account", "login", "--builder-id", "--name", "cli builder"],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "enter the code").await;
    let code = user_code(seen.last().unwrap());
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("{}/device?user_code={code}", fake.base_url()))),
        "{seen:?}"
    );
    while fake.device_polls() < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fake.approve_device(&code));
    let (ok, rest, stderr) = finish(child, lines).await;
    assert!(ok, "{rest}\n{stderr}");
    assert!(
        rest.contains("Signed in: account 1 `cli builder` added."),
        "{rest}"
    );
    assert!(
        !rest.contains("aorFAKELOGIN") && !stderr.contains("aorFAKELOGIN"),
        "no refresh token printed"
    );

    // `account list` shows it, as an OIDC account with its client id.
    let listed = list(&dir).output().await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["data"][0]["name"], "cli builder");
    assert_eq!(listed["data"][0]["auth_kind"], "oidc");
}

#[tokio::test]
async fn identity_center_login_asks_which_profile_on_standard_input() {
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let mut child = command(
        &fake,
        &dir,
        &[
            "account",
            "login",
            "--identity-center",
            "https://d-fake.awsapps.com/start?fake=several-profiles",
            "--region",
            "eu-west-1",
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "enter the code").await;
    assert!(fake.approve_device(&user_code(seen.last().unwrap())));
    let seen = read_until(&mut lines, "Which one (1-2)?").await;
    assert!(
        seen.iter().any(|l| l.contains(FAKE_IDC_PROFILES[1].0)),
        "{seen:?}"
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"2\n").await.unwrap();
    drop(stdin);
    let (ok, rest, stderr) = finish(child, lines).await;
    assert!(ok, "{rest}\n{stderr}");
    assert!(rest.contains(FAKE_IDC_PROFILES[1].0), "{rest}");
    assert!(rest.contains("\"api_region\": \"eu-central-1\""), "{rest}");
}

#[tokio::test]
async fn a_denied_login_exits_with_an_error_and_stores_nothing() {
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let mut child = command(&fake, &dir, &["account", "login", "--social", "github"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "enter the code").await;
    assert!(fake.deny_device(&user_code(seen.last().unwrap())));
    let (ok, _, stderr) = finish(child, lines).await;
    assert!(!ok);
    assert!(stderr.contains("denied"), "{stderr}");
    let listed = list(&dir).output().await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["data"], serde_json::json!([]));
    // Two methods at once is a usage error.
    let both = command(
        &fake,
        &dir,
        &["account", "login", "--builder-id", "--social"],
    )
    .output()
    .await
    .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("exactly one"));
}

#[tokio::test]
async fn import_reports_one_result_per_line() {
    let fake = kiro_gateway::fake_kiro::start(FakeKiroConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    let good = fake.config().refresh_token.clone();
    let tokens = dir.0.join("tokens.txt");
    std::fs::write(&tokens, format!("{good}\n{good}\naorBAD\n")).unwrap();
    let output = command(
        &fake,
        &dir,
        &[
            "account",
            "import",
            "--tokens-file",
            tokens.to_str().unwrap(),
        ],
    )
    .output()
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let outcomes: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["added", "duplicate", "failed"]);
}
