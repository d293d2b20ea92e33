//! Ctrl-C (SIGINT) and SIGTERM stop the demo and everything it started: both
//! service instances and the redis-server are gone when it exits.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Whether a process with this id exists (`kill -0`).
fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The number after "pid " in a line.
fn pid_in(line: &str) -> Option<u32> {
    let rest = line.split("pid ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Starts the demo, waits for `ready` in its output, sends `signal`, and checks
/// that the demo exits in time and leaves none of its processes behind.
fn signal_stops_everything(args: &[&str], ready: &str, signal: &str) {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_cache-demo"))
        .args(args)
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("demo starts");
    let stdout = demo.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The latest pid of each process (the story restarts redis-server).
    let mut pids = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the demo reached its ready line");
        let role = line.split(" pid ").next().unwrap_or_default().to_owned();
        if line.starts_with("redis-server pid ") || line.starts_with("instance ") {
            pids.insert(role, pid_in(&line).expect("a pid"));
        }
        if line.contains(ready) {
            break;
        }
    }
    assert!(
        pids.contains_key("redis-server"),
        "the demo started its own redis-server"
    );
    assert_eq!(pids.len(), 3, "redis-server and two instances: {pids:?}");
    assert!(
        pids.values().all(|&p| alive(p)),
        "all running before the signal: {pids:?}"
    );

    let sent = Command::new("kill")
        .args([signal, &demo.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = demo.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "the demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean stop: {status:?}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l == "instances and redis-server stopped"),
        "{rest:?}"
    );
    for (role, pid) in pids {
        assert!(!alive(pid), "{role} ({pid}) outlived the demo");
    }
}

#[test]
fn sigterm_while_serving_stops_the_instances_and_redis() {
    signal_stops_everything(
        &["--quick", "--serve", "--port", "0"],
        "Ctrl-C to stop",
        "-TERM",
    );
}

#[test]
fn ctrl_c_during_the_story_stops_the_instances_and_redis() {
    signal_stops_everything(&["--quick"], "two instances,", "-INT");
}
