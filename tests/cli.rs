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
