//! The student's `pd2` command line, run as a student runs it: the real
//! binary, in a home folder of its own (where its sign-in is kept),
//! against a real server.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{cli_binary, temp_dir};

/// One student's terminal: a home folder and the server's address.
pub struct Terminal {
    pub home: PathBuf,
    pub server: String,
    /// `PD2_TOKEN` to run with (a script's way), instead of a sign-in.
    pub token: Option<String>,
}

/// A finished run, as a person sees it.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON (`--json` runs).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

impl Terminal {
    pub fn new(server: &str) -> Self {
        Self {
            home: temp_dir("pd2-home"),
            server: server.to_owned(),
            token: None,
        }
    }

    /// Run with `PD2_SERVER` and `PD2_TOKEN`, as a CI job would.
    pub fn with_token(server: &str, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..Self::new(server)
        }
    }

    pub fn credentials(&self) -> PathBuf {
        self.home.join(".config/pd2/credentials.json")
    }

    fn command(&self, args: &[&str], dir: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(cli_binary());
        command
            .args(args)
            .current_dir(dir)
            // Nothing of the test process's own environment leaks in.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TZ", "UTC")
            .kill_on_drop(true);
        if let Some(token) = &self.token {
            command
                .env("PD2_TOKEN", token)
                .env("PD2_SERVER", &self.server);
        }
        command
    }

    /// Runs `pd2 ARGS` in `dir` to its end (at most two minutes).
    pub async fn run_in(&self, dir: &Path, args: &[&str]) -> Run {
        let mut command = self.command(args, dir);
        command.stdin(Stdio::null());
        let output: Output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("pd2 {args:?} did not finish in 2 minutes"))
            .expect("run pd2");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        let home = self.home.clone();
        self.run_in(&home, args).await
    }

    /// Starts `pd2 --json login`, and waits for the code it shows.
    pub async fn start_login(&self) -> Login {
        let mut command = self.command(&["--json", "login", "--server", &self.server], &self.home);
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command.spawn().expect("start pd2 login");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("pd2 login showed no code within 60 s")
            .expect("read pd2's output")
            .expect("pd2 login ended without showing a code");
        let shown: serde_json::Value = serde_json::from_str(&first).expect("JSON line");
        Login {
            user_code: shown["user_code"].as_str().expect("user_code").to_owned(),
            url: shown["verification_url_complete"]
                .as_str()
                .expect("url")
                .to_owned(),
            child,
            lines,
        }
    }
}

/// A `pd2 login` waiting for its code to be approved.
pub struct Login {
    pub user_code: String,
    /// Where to approve it (`…/#/device/WDJB-MJHT`).
    pub url: String,
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Login {
    /// Waits for `pd2 login` to end (at most `limit`): its exit code, the
    /// rest of its standard output, and its standard error.
    pub async fn finish(mut self, limit: Duration) -> Run {
        let mut stdout = String::new();
        let ended = tokio::time::timeout(limit, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                stdout.push_str(&line);
                stdout.push('\n');
            }
            self.child.wait().await
        })
        .await;
        let status = match ended {
            Ok(status) => status.expect("wait for pd2"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("pd2 login did not end within {limit:?}; so far: {stdout}");
            }
        };
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = err.read_to_string(&mut stderr).await;
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}
