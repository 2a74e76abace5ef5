//! The two binaries refuse bad paths and empty data up front, with a message and a failing
//! exit status, instead of training (or rendering) first and failing at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("constnet-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `bin` with `args` in `dir`; returns (success, stdout, stderr).
fn run(bin: &str, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A test set of zero images, as IDX files.
fn empty_test_set(dir: &Path) {
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        [0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28],
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 0]).unwrap();
}

#[test]
fn the_trainer_checks_where_it_will_write_before_training() {
    let train = env!("CARGO_BIN_EXE_train");
    let dir = scratch("train");
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::create_dir(dir.join("curves-dir.csv")).unwrap();
    let long = "w".repeat(250); // a legal name the probe must not make too long
    for (args, expected) in [
        (
            &["--out", "no-such-dir/w.cnet"][..],
            "cannot write no-such-dir/w.cnet",
        ),
        (
            &["--out", "a-directory", "--force"][..],
            "a-directory is a directory",
        ),
        // Without --force too: not "already exists ... pass --force", which would not help.
        (&["--out", "a-directory"][..], "a-directory is a directory"),
        (
            &["--out", "w.cnet", "--curves", "curves-dir"][..],
            "curves-dir.csv is a directory",
        ),
        // A prefix given as the csv file is that file (not curves-dir.csv.csv).
        (
            &["--out", "w.cnet", "--curves", "curves-dir.csv"][..],
            "curves-dir.csv is a directory",
        ),
        (
            &["--out", "run.csv", "--curves", "run"][..],
            "the same file as the training curves",
        ),
        // the same file by another path
        (
            &["--out", "sub/../run.csv", "--curves", "run"][..],
            "the same file as the training curves",
        ),
        (
            &["--out", long.as_str(), "--curves", "no-such-dir/c"][..],
            "cannot write no-such-dir/c",
        ),
    ] {
        let mut all = vec!["--data", DATA, "--epochs", "1"];
        all.extend_from_slice(args);
        let (ok, stdout, stderr) = run(train, &dir, &all);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stdout.contains("epoch"),
            "{args:?} trained first: {stdout}"
        );
    }
    // nothing left behind (no probe files, no curves)
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["a-directory", "curves-dir.csv", "sub"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evaluating_or_drawing_an_empty_test_set_is_an_error() {
    let dir = scratch("empty");
    empty_test_set(&dir);
    let weights = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/embedded/lenet5-mnist10k.cnet"
    );
    let (ok, _, stderr) = run(
        env!("CARGO_BIN_EXE_train"),
        &dir,
        &["--data", ".", "--eval", weights],
    );
    assert!(!ok && stderr.contains("holds no images"), "{stderr}");
    // The visualizer reads only the test set (no training files here).
    let (ok, _, stderr) = run(
        env!("CARGO_BIN_EXE_visualize"),
        &dir,
        &["--data", ".", "--weights", weights, "--out", "pictures"],
    );
    assert!(!ok && stderr.contains("holds no images"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--help` says what a `--threads` beyond one worker per micro-batch does (it is capped).
#[test]
fn the_help_says_how_many_threads_a_batch_can_use() {
    let (ok, stdout, _) = run(env!("CARGO_BIN_EXE_train"), Path::new("."), &["--help"]);
    assert!(ok);
    let threads: String = stdout
        .split("--threads")
        .nth(1)
        .and_then(|rest| rest.split("\n  --").next())
        .expect("--threads is documented")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let per = format!(
        "at most one per {} images of a batch",
        constnet::train::MICRO_BATCH
    );
    assert!(threads.contains(&per), "{threads}");
}

// ---- the live page (`visualize --serve`, issue 16) ---------------------------------------

mod live {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdout, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use constnet::LeNet5;
    use constnet::viz::{activation_gray, max_value};
    use serde_json::{Value, json};

    const ROOT: &str = env!("CARGO_MANIFEST_DIR");

    /// `visualize --serve --port 0`, killed when dropped; its stderr goes to a file.
    struct Server {
        child: Child,
        addr: String,
        stderr: PathBuf,
        _stdout: BufReader<ChildStdout>,
    }

    impl Server {
        fn start(name: &str) -> Self {
            let stderr = std::env::temp_dir().join(format!(
                "constnet-live-{name}-{}.stderr",
                std::process::id()
            ));
            let mut child = Command::new(env!("CARGO_BIN_EXE_visualize"))
                .args(["--serve", "--port", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let addr = line
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_else(|| panic!("no address in {line:?}"))
                .to_string();
            assert!(addr.starts_with("127.0.0.1:"), "{line}");
            Self {
                child,
                addr,
                stderr,
                _stdout: stdout,
            }
        }

        fn url(&self) -> String {
            format!("http://{}/", self.addr)
        }

        /// Resident memory of the server process, in KiB.
        fn rss_kib(&self) -> u64 {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
                .unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        }

        fn stderr(&self) -> String {
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.stderr);
        }
    }

    /// One HTTP/1.1 request with `Connection: close`; returns (status, body). A server that
    /// stops reading a refused body early may reset the rest of the write: that is ignored,
    /// and the answer read.
    fn http(addr: &str, method: &str, path: &str, body: &[u8], headers: &str) -> (u16, String) {
        try_http(addr, method, path, body, headers).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`http`], with a connection that fails or closes before an answer as an error.
    fn try_http(
        addr: &str,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &str,
    ) -> Result<(u16, String), String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}");
        let has_length = headers.to_ascii_lowercase().contains("content-length");
        if !has_length && (method != "GET" || !body.is_empty()) {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        // Read the head, then `Content-Length` bytes (chromedriver keeps connections open
        // whatever `Connection: close` says), or to the end if there is no length.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        let mut expected = None;
        loop {
            if expected.is_none()
                && let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                expected = Some(length.map_or(usize::MAX, |n| end + 4 + n));
            }
            if expected.is_some_and(|n| answer.len() >= n) {
                break;
            }
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Err(e) if answer.is_empty() => return Err(format!("no answer: {e}")),
                Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Ok((status, body))
    }

    fn drawing(values: &[f64]) -> Vec<u8> {
        serde_json::to_vec(values).unwrap()
    }

    #[test]
    fn the_live_server_refuses_bad_input_with_a_4xx_and_keeps_serving() {
        let server = Server::start("bad");
        let a = server.addr.as_str();
        let mut v = vec![0.0; 784];
        let good = drawing(&v);
        let (status, body) = http(a, "POST", "/api/forward", &good, "");
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["layers"].as_array().unwrap().len(), 8);

        let nan = String::from_utf8(good.clone())
            .unwrap()
            .replacen("0.0", "NaN", 1);
        v[7] = 1.5;
        let out_of_range = drawing(&v);
        let huge = vec![b' '; 100_000];
        for (method, path, body, headers, status, message) in [
            (
                "POST",
                "/api/forward",
                &b"[0, 1]"[..],
                "",
                422,
                "expected 784 pixels",
            ),
            (
                "POST",
                "/api/forward",
                nan.as_bytes(),
                "",
                422,
                "pixel 0 is not a finite number",
            ),
            (
                "POST",
                "/api/forward",
                &out_of_range,
                "",
                422,
                "pixel 7 is 1.5, outside [0, 1]",
            ),
            (
                "POST",
                "/api/forward",
                b"{\"pixels\": [",
                "",
                400,
                "malformed JSON",
            ),
            (
                "POST",
                "/api/forward",
                b"[0, zero]",
                "",
                400,
                "malformed JSON at element 1",
            ),
            // 10 MB declared, 100 KB sent: refused from the head, without reading it all
            (
                "POST",
                "/api/forward",
                &huge,
                "Content-Length: 10000000\r\n",
                413,
                "over the limit of 65536 bytes",
            ),
            (
                "POST",
                "/api/forward",
                b"[0]",
                "Transfer-Encoding: chunked\r\n",
                411,
                "Content-Length",
            ),
            (
                "GET",
                "/no/such/page",
                b"",
                "",
                404,
                "no such page: /no/such/page",
            ),
            ("GET", "/api/forward", b"", "", 405, "use POST"),
            (
                "GET",
                "/api/digit?index=99999",
                b"",
                "",
                404,
                "the bundled test set has 2000",
            ),
            ("GET", "/api/digit?first=x", b"", "", 400, "not a class 0-9"),
        ] {
            let (got, body) = http(a, method, path, body, headers);
            assert_eq!(got, status, "{method} {path}: {body}");
            let error: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            let error = error["error"].as_str().unwrap();
            assert!(error.contains(message), "{method} {path}: {error}");
        }
        // A head that never ends, and garbage instead of HTTP.
        let (status, _) = http(a, "GET", "/", b"", &"X-Padding: aaaaaaaa\r\n".repeat(600));
        assert_eq!(status, 431);
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

        // Still serving, and nothing panicked.
        let (status, body) = http(a, "POST", "/api/forward", &good, "");
        assert_eq!(status, 200, "{body}");
        let (status, page) = http(a, "GET", "/", b"", "");
        assert!(status == 200 && page.contains("LeNet-5"), "{status}");
        assert!(!server.stderr().contains("panic"), "{}", server.stderr());
    }

    #[test]
    fn the_live_server_answers_after_200_concurrent_clients_in_bounded_memory() {
        let seconds: f64 = std::env::var("CONSTNET_LOAD_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.5_f64)
            .min(60.0);
        let server = Server::start("load");
        let addr = Arc::new(server.addr.clone());
        let body = Arc::new(drawing(&vec![0.5; 784]));
        // warm up, then measure memory
        for _ in 0..20 {
            assert_eq!(http(&addr, "POST", "/api/forward", &body, "").0, 200);
        }
        let rss_before = server.rss_kib();
        let [ok, refused, wrong, dropped] = [(); 4].map(|()| Arc::new(AtomicUsize::new(0)));
        let first_drop = Arc::new(std::sync::Mutex::new(None::<String>));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let clients: Vec<_> = (0..200)
            .map(|i| {
                let (addr, body) = (Arc::clone(&addr), Arc::clone(&body));
                let counters = [&ok, &refused, &wrong, &dropped].map(Arc::clone);
                let first_drop = Arc::clone(&first_drop);
                std::thread::spawn(move || {
                    let [ok, refused, wrong, dropped] = counters;
                    let mut n = 0;
                    while Instant::now() < deadline {
                        n += 1;
                        // mostly drawings, some digits, some bad bodies
                        let outcome = match (i + n) % 10 {
                            0 => try_http(&addr, "POST", "/api/forward", b"[1,2", ""),
                            1 => try_http(
                                &addr,
                                "GET",
                                &format!("/api/digit?index={}", n % 2000),
                                b"",
                                "",
                            ),
                            _ => try_http(&addr, "POST", "/api/forward", &body, ""),
                        };
                        let counter = match outcome {
                            Ok((200, _)) => &ok,
                            Ok((400, _)) => &refused,
                            Ok(_) => &wrong,
                            Err(e) => {
                                first_drop.lock().unwrap().get_or_insert(e);
                                &dropped
                            }
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let rss_after = server.rss_kib();
        let [ok, refused, wrong, dropped] =
            [ok, refused, wrong, dropped].map(|c| c.load(Ordering::Relaxed));
        println!(
            "200 clients for {seconds} s: {ok} answered, {refused} refused as asked, {wrong} wrong \
             answers, {dropped} connections dropped ({:?}); {:.0} requests/s; server RSS \
             {rss_before} KiB before, {rss_after} KiB after",
            first_drop.lock().unwrap(),
            (ok + refused) as f64 / seconds
        );
        assert!(ok > 200, "only {ok} requests answered");
        assert!(refused > 0);
        assert_eq!(wrong, 0, "wrong answers under load");
        // Past the listen queue the kernel may drop a connection now and then: a rare
        // dropped connection is load shedding, many would be a server that stopped answering.
        assert!(
            dropped * 1000 <= ok + refused,
            "{dropped} connections dropped under load"
        );
        assert!(
            rss_after < rss_before + 64 * 1024,
            "memory grew from {rss_before} KiB to {rss_after} KiB"
        );
        let started = Instant::now();
        assert_eq!(http(&addr, "GET", "/api/digit?first=8", b"", "").0, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!server.stderr().contains("panic"), "{}", server.stderr());
    }

    // ---- a tiny WebDriver client, over chromedriver's HTTP/JSON protocol ----------------

    const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

    fn find_program(names: &[&str]) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
    }

    struct Browser {
        driver: Child,
        addr: String,
        session: String,
        profile: PathBuf,
    }

    impl Browser {
        /// Chromium under chromedriver, or `None` (with a note) if they are not installed
        /// and the browser test is not required (`CONSTNET_BROWSER_TEST=required`, as in CI).
        fn start() -> Option<Self> {
            let required = std::env::var("CONSTNET_BROWSER_TEST").as_deref() == Ok("required");
            let (Some(chromium), Some(driver)) = (
                find_program(&["chromium", "chromium-browser"]),
                find_program(&["chromedriver"]),
            ) else {
                assert!(
                    !required,
                    "CONSTNET_BROWSER_TEST=required, but chromium or chromedriver is not on PATH \
                     (apt-get install chromium chromium-driver)"
                );
                eprintln!(
                    "SKIPPED the browser test: chromium or chromedriver is not on PATH \
                     (apt-get install chromium chromium-driver; CONSTNET_BROWSER_TEST=required fails instead)"
                );
                return None;
            };
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let driver = Command::new(driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let profile =
                std::env::temp_dir().join(format!("constnet-chromium-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&profile);
            std::fs::create_dir_all(&profile).unwrap();
            let mut browser = Self {
                driver,
                addr: format!("127.0.0.1:{port}"),
                session: String::new(),
                profile,
            };
            let started = Instant::now();
            loop {
                let ready = TcpStream::connect(&browser.addr).is_ok()
                    && serde_json::from_str::<Value>(
                        &http(&browser.addr, "GET", "/status", b"", "").1,
                    )
                    .is_ok_and(|v| v["value"]["ready"] == true);
                if ready {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "chromedriver did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let args = [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,940",
                "--hide-scrollbars",
            ]
            .map(String::from)
            .into_iter()
            .chain([format!("--user-data-dir={}", browser.profile.display())])
            .collect::<Vec<_>>();
            let session = browser.command(
                "POST",
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args}
                }}}),
            );
            browser.session = session["sessionId"].as_str().unwrap().to_string();
            browser.command("POST", "/timeouts", json!({"script": 30_000}));
            Some(browser)
        }

        /// A WebDriver command (`path` under the session unless it is `/session`); its value.
        fn command(&self, method: &str, path: &str, body: Value) -> Value {
            let path = if path == "/session" {
                path.to_string()
            } else {
                format!("/session/{}{path}", self.session)
            };
            let body = if method == "GET" || method == "DELETE" {
                Vec::new()
            } else {
                serde_json::to_vec(&body).unwrap()
            };
            let headers = if body.is_empty() {
                ""
            } else {
                "Content-Type: application/json\r\n"
            };
            let (status, answer) = http(&self.addr, method, &path, &body, headers);
            let answer: Value = serde_json::from_str(&answer)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"));
            assert_eq!(status, 200, "{method} {path}: {answer}");
            answer["value"].clone()
        }

        fn script(&self, script: &str) -> Value {
            self.command(
                "POST",
                "/execute/sync",
                json!({"script": script, "args": []}),
            )
        }

        /// Runs an async script: `done(value)` is the last argument.
        fn script_async(&self, script: &str) -> Value {
            let script = format!("const done = arguments[arguments.length - 1];\n{script}");
            self.command(
                "POST",
                "/execute/async",
                json!({"script": script, "args": []}),
            )
        }

        fn element(&self, css: &str) -> Value {
            let found = self.command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            );
            found[ELEMENT].clone()
        }

        fn click(&self, css: &str) {
            let id = self.element(css);
            self.command(
                "POST",
                &format!("/element/{}/click", id.as_str().unwrap()),
                json!({}),
            );
        }

        /// Mouse actions: moves (relative to element `css`'s centre, in CSS pixels), with the
        /// button down between `down` and the end if `down` is given.
        fn mouse(&self, css: &str, points: &[(i64, i64)], press: bool) {
            let origin = json!({ ELEMENT: self.element(css) });
            let mut actions = Vec::new();
            for (k, &(x, y)) in points.iter().enumerate() {
                actions.push(
                    json!({"type": "pointerMove", "duration": if k == 0 { 0 } else { 60 },
                                    "origin": origin, "x": x, "y": y}),
                );
                if press && k == 0 {
                    actions.push(json!({"type": "pointerDown", "button": 0}));
                }
            }
            if press {
                actions.push(json!({"type": "pointerUp", "button": 0}));
            }
            self.command(
                "POST",
                "/actions",
                json!({"actions": [{"type": "pointer", "id": "mouse",
                                    "parameters": {"pointerType": "mouse"}, "actions": actions}]}),
            );
        }

        /// Waits until the JavaScript expression `condition` holds and the page has drawn
        /// every change.
        fn wait_for(&self, condition: &str) {
            let ok = self.script_async(&format!(
                "const t0 = performance.now();
                 (function poll() {{
                   if ({condition}) window.constnet.settled().then(() => done(true));
                   else if (performance.now() - t0 > 20000) done(false);
                   else setTimeout(poll, 20);
                 }})();"
            ));
            assert_eq!(ok, true, "timed out waiting for {condition}");
        }

        fn screenshot(&self, path: &Path) {
            let png = base64_decode(
                self.command("GET", "/screenshot", json!({}))
                    .as_str()
                    .unwrap(),
            );
            assert!(png.starts_with(b"\x89PNG"));
            std::fs::write(path, png).unwrap();
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            if !self.session.is_empty() {
                let path = format!("/session/{}", self.session);
                let _ = std::panic::catch_unwind(|| http(&self.addr, "DELETE", &path, b"", ""));
            }
            let _ = self.driver.kill();
            let _ = self.driver.wait();
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let bytes: Vec<u8> = text
            .bytes()
            .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
            .collect();
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &c)| n | u32::from(value(c)) << (18 - 6 * i));
            out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
        }
        out
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    #[test]
    fn the_live_page_in_chromium_shows_the_librarys_layers_and_follows_the_pen() {
        let Some(browser) = Browser::start() else {
            return;
        };
        let server = Server::start("browser");
        browser.command("POST", "/url", json!({"url": server.url()}));
        browser.wait_for("window.constnet && window.constnet.result");

        // The library's own answer for the first "8" of the bundled test set.
        let net =
            constnet::weights::load_lenet5(format!("{ROOT}/data/embedded/lenet5-mnist10k.cnet"))
                .unwrap();
        let test = constnet::mnist::load_test_dir(format!("{ROOT}/data/mnist-10k")).unwrap();
        let eight = (0..test.len()).find(|&i| test.label(i) == 8).unwrap();
        let mut ws = LeNet5::<f32>::workspace();
        net.probabilities(&test.image::<f32>(eight), &mut ws);
        let acts = LeNet5::<f32>::activations(&ws);
        let relu1 = acts.relu1.as_flattened().as_flattened();
        let m = max_value(relu1);
        let expected: Vec<u8> = relu1
            .iter()
            .map(|&a| activation_gray(f64::from(a), m))
            .collect();

        // Step away, then pick the first 8 with the page's button.
        browser.click("#next");
        browser.wait_for(&format!("window.constnet.index === {}", eight + 1));
        browser.click("#first8");
        browser.wait_for(&format!("window.constnet.index === {eight}"));
        let shown = browser.script(
            "return {
               prediction: document.querySelector('#prediction').textContent,
               best: document.querySelector('.node.best').dataset.class,
               conv1: Array.from(document.querySelectorAll('#layer-conv1 canvas'), (c) =>
                 Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)
                   .filter((_, i) => i % 4 === 0)),
             };",
        );
        assert_eq!(shown["prediction"], "8");
        assert_eq!(shown["best"], "8");
        let conv1: Vec<u8> = shown["conv1"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|map| {
                map.as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_u64().unwrap() as u8)
            })
            .collect();
        assert_eq!(conv1.len(), 6 * 28 * 28);
        let worst = conv1
            .iter()
            .zip(&expected)
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert!(
            worst <= 1,
            "conv1 on the page is off the library's by up to {worst} grey levels"
        );
        assert!(expected.contains(&255) && conv1.iter().filter(|&&g| g > 0).count() > 100);

        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-page-eight.png");
        browser.screenshot(&shot);
        println!("screenshot of the page showing an 8: {}", shot.display());

        // Round trips as the page measures them (performance.now around fetch).
        let trips = browser.script_async(
            "(async () => {
               const start = window.constnet.roundTrips.length;
               for (let i = 0; i < 50; i++) { window.constnet.schedule(); await window.constnet.settled(); }
               done(window.constnet.roundTrips.slice(start));
             })();",
        );
        let trips: Vec<f64> = trips
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        let med = median(trips.clone());
        println!(
            "browser round trip (POST /api/forward, JSON parsed): median {med:.2} ms over {} requests, max {:.2} ms",
            trips.len(),
            trips.iter().copied().fold(0.0, f64::max)
        );
        assert!(med < 250.0, "median round trip {med} ms");

        // A stroke with the mouse across the pad changes the output.
        let before = browser
            .script("return [window.constnet.updates, window.constnet.result.probabilities];");
        browser.mouse(
            "#pad",
            &[(-120, -100), (-40, -60), (40, -20), (120, 20)],
            true,
        );
        browser.wait_for(&format!("window.constnet.updates > {}", before[0]));
        let after = browser.script(
            "return [window.constnet.updates, window.constnet.result.probabilities,
                     document.querySelector('#source').textContent];",
        );
        let changed = before[1]
            .as_array()
            .unwrap()
            .iter()
            .zip(after[1].as_array().unwrap())
            .map(|(p, q)| (p.as_f64().unwrap() - q.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(
            changed > 1e-3,
            "the stroke did not change the output ({changed})"
        );
        assert!(
            after[2].as_str().unwrap().contains("your drawing"),
            "{}",
            after[2]
        );
        println!(
            "a stroke of 4 mouse moves gave {} updates; largest probability change {changed:.3}",
            after[0].as_u64().unwrap() - before[0].as_u64().unwrap()
        );

        // Hover pool1 map 2, pixel (x 3, y 5): conv1 map 2's window at (6, 10) is outlined.
        // pool1 maps are 14 pixels of 6 CSS pixels, 84 px across: (3, 5) is at (-21, -9) from
        // the centre of the map.
        browser.mouse("#layer-pool1 .map:nth-child(3) canvas", &[(-21, -9)], false);
        let outlined = browser.script(
            "const o = document.querySelectorAll('#layer-conv1 .outline');
             const c = document.querySelectorAll('#layer-conv1 canvas')[2].getBoundingClientRect();
             return Array.from(o, (e) => {
               const r = e.getBoundingClientRect();
               return { ...e.dataset, left: r.left - c.left, top: r.top - c.top, width: r.width };
             });",
        );
        let outlined = outlined.as_array().unwrap();
        assert_eq!(outlined.len(), 1, "{outlined:?}");
        let o = &outlined[0];
        assert_eq!(
            (&o["map"], &o["x"], &o["y"], &o["size"]),
            (&json!("2"), &json!("6"), &json!("10"), &json!("2")),
            "{o}"
        );
        // conv1 maps are drawn at 4 CSS pixels per pixel: the box covers pixels 6-7, 10-11.
        let px = |k: &str| o[k].as_f64().unwrap();
        assert_eq!(
            (px("left"), px("top"), px("width")),
            (24.0, 40.0, 8.0),
            "{o}"
        );

        // Hover a conv2 pixel: a 5×5 field in each of pool1's 6 maps.
        browser.mouse("#layer-conv2 .map:nth-child(1) canvas", &[(0, 0)], false);
        let fields = browser.script(
            "return Array.from(document.querySelectorAll('#layer-pool1 .outline'), (e) => e.dataset.size);",
        );
        assert_eq!(fields, json!(["5", "5", "5", "5", "5", "5"]));
        // Hover output node 8: ten connections into fc2.
        browser.mouse("#outputs .node:nth-child(9)", &[(0, 0)], false);
        let links =
            browser.script("return document.querySelectorAll('#layer-fc2 .outline').length;");
        assert_eq!(links, 10);
        assert!(!server.stderr().contains("panic"), "{}", server.stderr());
    }
}

/// `visualize --model NAME --layer PATH` draws a named layer of a later network as one PNG
/// per layer, refuses an unknown layer by name (listing some that exist), and does not
/// overwrite without `--force`.
#[test]
fn the_visualizer_draws_named_layers_of_the_later_networks() {
    let dir = scratch("layers");
    let bin = env!("CARGO_BIN_EXE_visualize");
    let args = ["--model", "resnet20", "--data", DATA, "--out", "maps"];
    let (ok, stdout, stderr) = run(
        bin,
        &dir,
        &[
            &args[..],
            &["--layer", "layer1", "--layer", "layer3.0.conv1"],
        ]
        .concat(),
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("random weights"), "{stderr}");
    for (file, (w, h)) in [
        // 16 maps of 32×32 in 4 columns, zoom 3, gap 2; 64 maps of 8×8 in 8 columns, zoom 12
        ("resnet20-layer1.png", (4 * 96 + 3 * 2, 4 * 96 + 3 * 2)),
        (
            "resnet20-layer3.0.conv1.png",
            (8 * 96 + 7 * 2, 8 * 96 + 7 * 2),
        ),
    ] {
        let png = std::fs::read(dir.join("maps").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}\n{stdout}"));
        let header = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let info = header.info();
        assert_eq!(
            (info.width as usize, info.height as usize),
            (w, h),
            "{file}"
        );
    }
    let (ok, _, stderr) = run(bin, &dir, &[&args[..], &["--layer", "layer1"]].concat());
    assert!(!ok && stderr.contains("--force"), "{stderr}");
    let (ok, _, stderr) = run(
        bin,
        &dir,
        &[&args[..], &["--layer", "layer9", "--force"]].concat(),
    );
    assert!(
        !ok && stderr.contains("no layer called `layer9`") && stderr.contains("layer1.0.conv1"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(bin, &dir, &["--layer", "conv1", "--data", DATA]);
    assert!(
        !ok && stderr.contains("--layer goes with --model"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `n` images and labels in IDX files under `dir` (`train-` or `t10k-`), taken in order from
/// the bundled digits.
fn idx_subset(dir: &Path, prefix: &str, n: usize) {
    let (train, _) = constnet::mnist::load_dir(DATA).unwrap();
    let mut images = vec![0, 0, 8, 3];
    images.extend_from_slice(&(n as u32).to_be_bytes());
    images.extend_from_slice(&28u32.to_be_bytes());
    images.extend_from_slice(&28u32.to_be_bytes());
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        images.extend_from_slice(train.pixels(i));
        labels.push(train.label(i) as u8);
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

/// `train-resnet20` (`--model resnet20`) trains with batch norm on whole micro-batches, saves
/// weights that `--eval --model resnet20` reloads to the same test accuracy (constnet's
/// format and a PyTorch state dict), and refuses what it cannot do with a message; `train`,
/// which leaves ResNet-20 out, names the command that has it.
#[test]
fn the_trainer_trains_resnet20_and_its_weights_reload_with_eval() {
    use rand::SeedableRng;
    let train = env!("CARGO_BIN_EXE_train-resnet20");
    let dir = scratch("resnet20");
    idx_subset(&dir, "train", 40);
    idx_subset(&dir, "t10k", 24);
    let data = dir.to_str().unwrap();

    let lenet_only = env!("CARGO_BIN_EXE_train");
    for args in [
        &["--model", "resnet20"][..],
        &["--model", "resnet20", "--eval", "x.cnet"],
    ] {
        let mut all = vec!["--data", data];
        all.extend_from_slice(args);
        let (ok, out, err) = run(lenet_only, &dir, &all);
        assert!(
            !ok && out.is_empty() && err.contains("--bin train-resnet20"),
            "{args:?}: {err}"
        );
    }

    for (args, expected) in [
        (&["--batch", "24"][..], "multiple of 16"),
        (&["--model", "resnet21"][..], "unknown model 'resnet21'"),
        (&["--weight-decay", "-1"][..], "--weight-decay"),
    ] {
        let mut all = vec!["--model", "resnet20", "--data", data];
        all.extend_from_slice(args);
        let (ok, _, err) = run(train, &dir, &all);
        assert!(!ok && err.contains(expected), "{args:?}: {err}");
    }

    let (ok, out, err) = run(
        train,
        &dir,
        // ResNet-20 is this command's default network
        &["--data", data, "--epochs", "1", "--batch", "32"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("training ResNet-20"), "{out}");
    let accuracy = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("test accuracy:"))
            .unwrap_or_else(|| panic!("no test accuracy in {out}"))
            .to_string()
    };
    let trained = accuracy(&out);
    assert!(trained.ends_with("/24)"), "{trained}");
    // 40 images: one batch of 32, and the 8 that do not fill a micro-batch are left out
    assert!(dir.join("resnet20.cnet").exists());

    let (ok, out, err) = run(
        train,
        &dir,
        &[
            "--model",
            "resnet20",
            "--data",
            data,
            "--eval",
            "resnet20.cnet",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(accuracy(&out), trained);

    // the same weights as a PyTorch state dict
    let mut net = constnet::zeroed_box::<constnet::ResNet20<f32, 1, 10>>();
    constnet::weights::load_file(&mut *net, dir.join("resnet20.cnet")).unwrap();
    let st = constnet::state_dict::save_state_dict(&*net).unwrap();
    std::fs::write(dir.join("resnet20.safetensors"), st).unwrap();
    let (ok, out, err) = run(
        train,
        &dir,
        &[
            "--model",
            "resnet20",
            "--data",
            data,
            "--eval",
            "resnet20.safetensors",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(accuracy(&out), trained);

    // LeNet-5's weights are not ResNet-20's: refused, naming what the file holds
    let lenet = constnet::LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
    constnet::weights::save_file(&*lenet, dir.join("lenet5.cnet"), false).unwrap();
    let (ok, _, err) = run(
        train,
        &dir,
        &[
            "--model",
            "resnet20",
            "--data",
            data,
            "--eval",
            "lenet5.cnet",
        ],
    );
    assert!(!ok && err.contains("lenet5.cnet"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `visualize --model resnet18 --weights FILE --image PHOTO --labels FILE` classifies the
/// photo as the library does (torchvision's transform, then the network) and prints the top 5
/// with their names; a photo the network cannot read, a file that is no photo and a label
/// list of the wrong length are refused with a message, and nothing is drawn or created.
#[test]
fn the_visualizer_classifies_a_photo_with_torchvision_weights() {
    use constnet::photo::{Photo, imagenet_input};
    use constnet::{Layer, Network, ResNet18, Tensor, zeroed_box};
    use rand::SeedableRng;
    let bin = env!("CARGO_BIN_EXE_visualize");
    let dir = scratch("photo");
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/photo/pattern.jpg");
    let net = ResNet18::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(7));
    let weights = dir.join("resnet18.safetensors");
    std::fs::write(
        &weights,
        constnet::state_dict::save_state_dict(&*net).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = (0..1000).map(|i| format!("thing-{i}")).collect();
    std::fs::write(dir.join("classes.txt"), names.join("\n")).unwrap();

    // The library's answer.
    let bytes = std::fs::read(photo).unwrap();
    let mut x = zeroed_box::<<ResNet18<f32> as Layer>::Input>();
    imagenet_input(&Photo::decode(&bytes).unwrap(), 224, 224, x.flat_mut()).unwrap();
    let mut ws = ResNet18::<f32>::workspace();
    let probs = net.probabilities(&x, &mut ws);
    let best = constnet::argmax(&probs).unwrap();

    let w = weights.to_str().unwrap();
    let args = ["--model", "resnet18", "--weights", w, "--image", photo];
    let (ok, stdout, stderr) = run(
        bin,
        &dir,
        &[&args[..], &["--labels", "classes.txt"]].concat(),
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with("top 5 of 1000 classes"), "{stdout}");
    assert_eq!(lines.len(), 6, "{stdout}");
    let first = format!(
        "{:>6.2}%  class {best:>4}  thing-{best}",
        100.0 * probs[best]
    );
    assert_eq!(lines[1], first, "{stdout}");
    assert!(
        !dir.join("viz").exists(),
        "nothing to draw, nothing created"
    );

    let (ok, _, stderr) = run(bin, &dir, &[&args[..], &["--labels", w]].concat());
    assert!(!ok && stderr.contains("--labels"), "{stderr}");
    let (ok, _, stderr) = run(bin, &dir, &["--model", "resnet18", "--image", w]);
    assert!(!ok && stderr.contains("not a PNG or JPEG"), "{stderr}");
    let (ok, _, stderr) = run(bin, &dir, &["--model", "resnet20", "--image", photo]);
    assert!(!ok && stderr.contains("does not read photos"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
