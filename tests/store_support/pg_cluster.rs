//! A PostgreSQL server of one test's own (its own data directory and port), so the test can
//! stop and start it without disturbing the server scripts/pg.sh runs for everyone else. Found
//! the way scripts/pg.sh finds it (`initdb` on PATH, /usr/lib/postgresql/15/bin,
//! /usr/local/bin); run as the unprivileged user `kgtest` when the tests run as root.

use std::path::PathBuf;
use std::process::Command;

/// A running (or stopped) private cluster; stopped and deleted on drop.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_user: Option<&'static str>,
}

const USER: &str = "kgtest";

fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/lib/postgresql/15/bin".into(), "/usr/local/bin".into()])
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgCluster {
    /// Creates and starts a cluster, or `None` (with a note on stderr) when PostgreSQL is not
    /// installed.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = find_bin() else {
            eprintln!("PostgreSQL (initdb, pg_ctl) not found: skipping");
            return None;
        };
        let as_user = is_root().then_some(USER);
        if as_user.is_some() {
            let known = Command::new("id")
                .arg(USER)
                .output()
                .is_ok_and(|o| o.status.success());
            if !known {
                run(Command::new("useradd").args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ]));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("kg-pg-own.")
            .tempdir()
            .unwrap();
        if let Some(user) = as_user {
            run(Command::new("chown").arg(user).arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PgCluster {
            bin,
            dir,
            port,
            as_user,
        };
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let tool = self.bin.join(tool);
        let mut command = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&tool);
                c
            }
            None => Command::new(&tool),
        };
        command.args(args);
        run(&mut command);
    }

    /// The server's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data();
        self.pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        );
    }

    /// Stops the server the way an operator would (`pg_ctl stop -m fast`: connections are
    /// closed, committed work is kept).
    pub fn stop_server(&self) {
        let data = self.data();
        self.pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let tool = self.bin.join("pg_ctl");
        let mut command = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&tool);
                c
            }
            None => Command::new(&tool),
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
