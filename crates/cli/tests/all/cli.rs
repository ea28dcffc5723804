//! The `nimbus` binary as a user runs it: `up`, then `deploy`, `apps`, `functions`, `invoke`,
//! `rollback`, `delete` from another process that finds the API through the client config.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::guests::repo_root;

pub(crate) struct Up {
    pub(crate) child: Child,
    pub(crate) config: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// The open-file limit (soft and hard) the server runs under, if the test sets one.
    nofile: Option<u32>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    pub(crate) fn start(data: &Path) -> Self {
        Self::start_env(data, &[])
    }

    /// `nimbus up` on `data` with extra environment variables.
    pub(crate) fn start_env(data: &Path, envs: &[(&str, &str)]) -> Self {
        Self::start_full(data, envs, &[], None)
    }

    /// `nimbus up` on `data` with extra flags, under an open-file limit of `nofile`.
    pub(crate) fn start_limited(data: &Path, flags: &[&str], nofile: u32) -> Self {
        Self::start_full(data, &[], flags, Some(nofile))
    }

    fn start_full(data: &Path, envs: &[(&str, &str)], flags: &[&str], nofile: Option<u32>) -> Self {
        let mut args: Vec<String> = [
            "up",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--api-listen",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["127.0.0.1:0".into(), "--data-dir".into()]);
        args.push(data.to_str().unwrap().to_owned());
        args.extend(flags.iter().map(|f| f.to_string()));
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_with(&args, envs, nofile)
    }

    fn start_with(args: &[String], envs: Vec<(String, String)>, nofile: Option<u32>) -> Self {
        let config = tempfile::tempdir().unwrap();
        let child = Self::spawn(args, config.path(), &envs, nofile);
        let up = Self {
            child,
            config,
            args: args.to_vec(),
            envs,
            nofile,
        };
        up.wait_ready();
        up
    }

    fn spawn(
        args: &[String],
        config: &Path,
        envs: &[(String, String)],
        nofile: Option<u32>,
    ) -> Child {
        let mut command = match nofile {
            // `exec` keeps the server the child (so kill() reaches it) under the new limit.
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_nimbus"));
                sh
            }
            None => Command::new(env!("CARGO_BIN_EXE_nimbus")),
        };
        command
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .env("NIMBUS_CONFIG", config.join("config.json"))
            .env("NIMBUS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Readiness: the client config appears once the API is bound; then poll `apps`.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "nimbus up did not become ready");
            if self.config.path().join("config.json").exists()
                && self.nimbus(&["apps"]).status.success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the server, then starts it again on the same data dir and client config.
    pub(crate) fn kill_9_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
        self.child = Self::spawn(&self.args, self.config.path(), &self.envs, self.nofile);
        self.wait_ready();
    }

    /// The API URL and token from the client config.
    pub(crate) fn api(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.config.path().join("config.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        (
            config["api"].as_str().unwrap().to_owned(),
            config["token"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) fn nimbus(&self, args: &[&str]) -> Output {
        self.nimbus_env(args, &[])
    }

    /// `nimbus ARGS` as a client of this server, with extra environment variables.
    pub(crate) fn nimbus_env(&self, args: &[&str], envs: &[(&str, &Path)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .envs(envs.iter().copied())
            .env("NIMBUS_CONFIG", self.config.path().join("config.json"))
            .env_remove("NIMBUS_API")
            .env_remove("NIMBUS_TOKEN")
            .current_dir(repo_root())
            .output()
            .unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.nimbus(args);
        assert!(
            out.status.success(),
            "nimbus {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn a_new_user_deploys_the_js_example_and_calls_it() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());

    let deployed = up.ok(&["deploy", "examples/hello-js"]);
    assert!(
        deployed.contains("deployed hello-js version 1"),
        "{deployed}"
    );
    assert!(deployed.contains("/hello"), "{deployed}");

    let body = up.ok(&["invoke", "hello-js", "--path", "/hello/Ada"]);
    assert_eq!(body, "Hello, Ada! (from a JavaScript function on Nimbus)\n");

    let apps: serde_json::Value = serde_json::from_str(&up.ok(&["apps", "--json"])).unwrap();
    assert_eq!(apps[0]["name"], "hello-js");
    assert_eq!(apps[0]["active_version"], 1);

    let functions = up.ok(&["functions", "hello-js"]);
    assert!(
        functions.contains("hello") && functions.contains("128MB"),
        "{functions}"
    );

    // Redeploy without changes: nothing compiled, version 2; roll back to 1.
    let again: serde_json::Value =
        serde_json::from_str(&up.ok(&["deploy", "--no-build", "examples/hello-js", "--json"]))
            .unwrap();
    assert_eq!(again["app"]["active_version"], 2);
    assert_eq!(again["components"][0]["cache_hit"], true);
    assert!(up.ok(&["rollback", "hello-js"]).contains("version 1"));

    up.ok(&["delete", "hello-js"]);
    let gone = up.nimbus(&["functions", "hello-js"]);
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.starts_with("error: app `hello-js` not found"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn client_errors_are_one_line_with_a_hint_and_a_nonzero_exit() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());

    // Wrong token.
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["apps"])
        .env("NIMBUS_CONFIG", up.config.path().join("config.json"))
        .env("NIMBUS_TOKEN", "nmb_wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: missing or invalid API token\nhint: "),
        "{stderr}"
    );

    // No server.
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["apps", "--api", "http://127.0.0.1:1"])
        .env("NIMBUS_CONFIG", up.config.path().join("config.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the control API") && stderr.contains("nimbus up"),
        "{stderr}"
    );

    // A manifest error is caught before anything is uploaded, with file, line and field.
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        "[app]\nname = \"bad\"\n\n[[function]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroutes = [\"/f\"]\ntimeout = 5\n",
    )
    .unwrap();
    let out = up.nimbus(&["deploy", app.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nimbus.toml:8:1") && stderr.contains("timeout"),
        "{stderr}"
    );

    // Something missing: the hint names the command that lists that kind of thing.
    for (args, hint) in [
        (&["keys", "rm", "NOPE"][..], "nimbus keys list"),
        (&["delete", "nope"][..], "nimbus apps"),
    ] {
        let out = up.nimbus(args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("hint: `{hint}")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn nimbus_new_templates_build_deploy_and_serve() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let projects = tempfile::tempdir().unwrap();
    let parent = projects.path().to_str().unwrap();
    // JS apps share one install of their npm dependencies per machine: here, per test run.
    let npm_cache = tempfile::tempdir().unwrap();
    let env = [("NIMBUS_NPM_CACHE", npm_cache.path())];
    let deploy = |args: &[&str]| {
        let out = up.nimbus_env(&[&["deploy"], args].concat(), &env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "deploy {args:?}: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    for (lang, name) in [("js", "jsapp"), ("python", "pyapp"), ("js", "jsapp2")] {
        up.ok(&["new", name, "--lang", lang, "--dir", parent]);
        let dir = projects.path().join(name);
        let dir = dir.to_str().unwrap();
        // The template's build works every time (npm 11 once pruned a dependency on the
        // second install); an unchanged app is not built again, unless asked.
        let (deployed, stderr) = deploy(&[dir]);
        assert!(
            deployed.contains(&format!("deployed {name} version 1")),
            "{deployed}"
        );
        if lang == "js" {
            // Only the first JS app installs; the second links the same install.
            let installed = stderr.contains("installing npm dependencies");
            assert_eq!(installed, name == "jsapp", "{name}: {stderr}");
            assert!(stderr.contains("node_modules ->"), "{stderr}");
        }
        let (again, stderr) = deploy(&[dir]);
        assert!(stderr.contains("skipped: inputs unchanged"), "{stderr}");
        assert!(again.contains("0 components compiled"), "{again}");
        let (rebuilt, stderr) = deploy(&["--rebuild", dir]);
        assert!(stderr.contains(&format!("building {name}")), "{stderr}");
        assert!(rebuilt.contains("version 3"), "{rebuilt}");
        let path = format!("/{name}/x");
        let body: serde_json::Value =
            serde_json::from_str(&up.ok(&["invoke", name, "--path", &path])).unwrap();
        assert_eq!(body["message"], format!("Hello from {name}!"), "{lang}");
        assert_eq!(body["path"], path, "{lang}");
    }
    let out = up.nimbus(&["new", "Bad_Name", "--dir", parent]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid app name"));
    assert!(!projects.path().join("Bad_Name").exists());
    let out = up.nimbus(&["new", "jsapp", "--dir", parent]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn up_reads_its_settings_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("nimbus-server.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\ns3_listen = \"127.0.0.1:0\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let up = Up::start_with(
        &[
            "up".into(),
            "--config".into(),
            file.to_str().unwrap().into(),
        ],
        Vec::new(),
        None,
    );
    assert!(up.ok(&["apps"]).contains("no apps deployed"));
    assert!(data.join("state.redb").exists());

    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nport = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["up", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid config file") && stderr.contains("port"),
        "{stderr}"
    );
}

#[test]
fn kv_commands_set_get_list_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());

    assert_eq!(
        up.ok(&["kv", "set", "notes", "todo/1", "buy milk"]),
        "set notes/todo/1 (8 bytes)\n"
    );
    up.ok(&["kv", "set", "notes", "todo/2", "call Ada", "--ttl", "3600"]);
    let file = data.path().join("value.bin");
    std::fs::write(&file, [1u8, 2, 255]).unwrap();
    up.ok(&[
        "kv",
        "set",
        "notes",
        "blob",
        &format!("@{}", file.display()),
    ]);

    // `get` prints the raw value, nothing added.
    assert_eq!(up.ok(&["kv", "get", "notes", "todo/1"]), "buy milk");
    let blob = up.nimbus(&["kv", "get", "notes", "blob"]);
    assert_eq!(blob.stdout, [1u8, 2, 255]);
    let json: serde_json::Value =
        serde_json::from_str(&up.ok(&["kv", "get", "notes", "blob", "--json"])).unwrap();
    assert_eq!(json["value_base64"], "AQL/");

    assert_eq!(
        up.ok(&["kv", "list", "notes", "--prefix", "todo/"]),
        "todo/1\ntodo/2\n"
    );
    assert_eq!(up.ok(&["kv", "list", "notes", "--limit", "1"]), "blob\n");

    up.ok(&["kv", "del", "notes", "todo/1"]);
    let missing = up.nimbus(&["kv", "get", "notes", "todo/1"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.starts_with("error: no key `todo/1` in store `notes`"),
        "{stderr}"
    );
    let bad = up.nimbus(&["kv", "set", "Notes", "k", "v"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("store name"), "{stderr}");
}

#[test]
fn secret_commands_take_the_value_from_stdin_and_never_print_it() {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());

    let mut child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["secret", "set", "shop", "db_password"])
        .env("NIMBUS_CONFIG", up.config.path().join("config.json"))
        .env_remove("NIMBUS_API")
        .env_remove("NIMBUS_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hunter2-canary\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "set secret db_password of shop\n"
    );
    up.ok(&["secret", "set", "shop", "api_token", "tok"]);

    let listed = up.ok(&["secret", "list", "shop"]);
    assert_eq!(listed, "api_token\ndb_password\n");
    let json = up.ok(&["secret", "list", "shop", "--json"]);
    assert!(
        !json.contains("hunter2") && json.contains("db_password"),
        "{json}"
    );

    up.ok(&["secret", "rm", "shop", "api_token"]);
    assert_eq!(up.ok(&["secret", "list", "shop"]), "db_password\n");
    let missing = up.nimbus(&["secret", "rm", "shop", "api_token"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no secret `api_token`"));
}

/// The aws CLI from the venv `scripts/setup-s3-clients.sh` makes (tests fail, never skip,
/// without it).
pub fn aws_cli() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache")
        });
    let aws = cache.join("nimbus/s3-clients/bin/aws");
    assert!(
        aws.exists(),
        "aws CLI missing at {}: run `bash scripts/setup-s3-clients.sh`",
        aws.display()
    );
    aws
}

#[test]
fn keys_create_gives_the_aws_cli_what_it_needs() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let key: serde_json::Value =
        serde_json::from_str(&up.ok(&["keys", "create", "--json"])).unwrap();
    let (id, secret, endpoint) = (
        key["access_key_id"].as_str().unwrap().to_owned(),
        key["secret_access_key"].as_str().unwrap().to_owned(),
        key["endpoint_url"].as_str().unwrap().to_owned(),
    );
    assert!(id.starts_with("NMB") && id.len() == 20, "{id}");
    assert_eq!(secret.len(), 40);
    let aws = |args: &[&str]| {
        Command::new(aws_cli())
            .arg("--endpoint-url")
            .arg(&endpoint)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let file = data.path().join("note.txt");
    std::fs::write(&file, "hello s3\n").unwrap();
    assert!(aws(&["s3", "mb", "s3://docs"]).status.success());
    assert!(
        aws(&["s3", "cp", file.to_str().unwrap(), "s3://docs/note.txt"])
            .status
            .success()
    );
    let out = aws(&["s3", "cp", "s3://docs/note.txt", "-"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello s3\n");

    // Listed without the secret; revoked keys stop working.
    let listed = up.ok(&["keys", "list"]);
    assert_eq!(listed, format!("{id}\n"));
    assert!(!up.ok(&["keys", "list", "--json"]).contains(&secret));
    up.ok(&["keys", "rm", &id]);
    let denied = aws(&["s3", "ls"]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("InvalidAccessKeyId"), "{stderr}");
}
