//! `cargo xtask demo`: an example service whose `GET /predictions/{id}` is
//! cached with `get_or_load` over a slow simulated model, with `/metrics` and
//! `/health/cache` beside it. Two instances of it run over one Redis and are
//! driven through a scripted story.
//!
//! ```text
//! cargo xtask demo [--serve] [--quick] [--port P]
//! ```
//!
//! With a Redis L2 when `REDIS_URL` is set or a local `redis-server` can be
//! started (then the story includes an outage); memory-only otherwise. Ctrl-C
//! or SIGTERM stops both instances (each drains its cache) and the
//! `redis-server` it started.
#![forbid(unsafe_code)]

mod fleet;
mod instance;
mod story;

use std::time::Duration;

use cache_testkit::{RedisServer, http_get};

use fleet::Instance;

/// What the command line asked for.
struct Args {
    serve: bool,
    quick: bool,
    port: u16,
}

fn usage() -> String {
    "usage: cache-demo [--serve] [--quick] [--port P]\n       \
     cache-demo instance --name N [--port P] [--redis URL]"
        .to_owned()
}

fn value_of(args: &[String], flag: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage())),
    }
}

fn port_of(args: &[String]) -> Result<u16, String> {
    value_of(args, "--port")?.map_or(Ok(0), |p| {
        p.parse()
            .map_err(|_| format!("--port takes a port number, got {p:?}"))
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = if args.first().map(String::as_str) == Some("instance") {
        match (
            value_of(&args, "--name"),
            port_of(&args),
            value_of(&args, "--redis"),
        ) {
            (Ok(Some(name)), Ok(port), Ok(redis)) => instance::run(&name, port, redis).await,
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => Err(e.into()),
            (Ok(None), ..) => Err(usage().into()),
        }
    } else if let Some(unknown) = args
        .iter()
        .find(|a| a.starts_with('-') && !["--serve", "--quick", "--port"].contains(&a.as_str()))
    {
        Err(format!("unknown option {unknown}\n{}", usage()).into())
    } else {
        match port_of(&args) {
            Ok(port) => {
                let serve = args.iter().any(|a| a == "--serve");
                let quick = args.iter().any(|a| a == "--quick");
                run(Args { serve, quick, port }).await
            }
            Err(e) => Err(e.into()),
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C, or (`watch_stdin`) when standard input
/// closes: an instance stops when the story that started it is gone.
pub(crate) async fn stop_requested(watch_stdin: bool) {
    let stdin_closed = async {
        if watch_stdin {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
                let _ = tx.send(());
            });
            let _ = rx.await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = stdin_closed => {}
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Redis: REDIS_URL, else a local redis-server we can also kill, else none.
    let mut local = None;
    let url = match std::env::var("REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => match RedisServer::start() {
            Ok(server) => {
                let url = server.url();
                println!(
                    "redis-server pid {} on port {} (started for the demo)",
                    server.pid().unwrap_or(0),
                    server.port()
                );
                local = Some(server);
                Some(url)
            }
            Err(e) => {
                println!("(no redis-server: {e}; running memory-only)");
                None
            }
        },
    };
    let mut fleet = [
        Instance::start("A", args.port, url.as_deref())?,
        Instance::start("B", 0, url.as_deref())?,
    ];
    for i in &fleet {
        println!("instance {} pid {} on http://{}", i.name, i.pid(), i.addr);
    }
    let tier = match (&url, &local) {
        (Some(_), Some(_)) => "L1 + a shared Redis L2 (a local redis-server)",
        (Some(_), None) => "L1 + a shared Redis L2 (REDIS_URL)",
        _ => "L1 only",
    };
    println!(
        "two instances, {tier}; the model takes {:?} per call\n",
        instance::MODEL_LATENCY
    );

    let outcome = tokio::select! {
        r = story::run(&fleet, local.as_mut(), url.is_some(), args.quick) => r.map(Some),
        () = stop_requested(false) => Ok(None),
    };
    let result = match outcome {
        Ok(Some(steps)) => report(&fleet, &steps, args.serve).await,
        Ok(None) => {
            println!("\nstopped during the story");
            Ok(())
        }
        Err(e) => Err(e),
    };
    // Both instances drain their caches and exit; then the redis-server goes
    // (dropping it kills it).
    for i in &mut fleet {
        i.stop(Duration::from_secs(10));
    }
    drop(local);
    println!("instances and redis-server stopped");
    result
}

/// Prints the table (and, with `serve`, keeps serving until told to stop).
async fn report(
    fleet: &[Instance; 2],
    steps: &[story::Step],
    serve: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\n{:<66} {:>8} {:>7} {:>13}",
        "step", "requests", "failed", "source calls"
    );
    for s in steps {
        println!(
            "{:<66} {:>8} {:>7} {:>13}\n    {}",
            s.name, s.requests, s.failed, s.source_calls, s.detail
        );
    }
    let total_failed: usize = steps.iter().map(|s| s.failed).sum();
    println!("\nfailed requests in the whole story: {total_failed}");
    for i in fleet {
        let metrics = http_get(i.addr, "/metrics").await?;
        let lines = metrics
            .body
            .lines()
            .filter(|l| l.starts_with("cache_requests_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>();
        println!("\nfrom {}'s /metrics:\n  {}", i.name, lines.join("\n  "));
    }
    if serve {
        let (a, b) = (fleet[0].addr, fleet[1].addr);
        println!(
            "\nserving on http://{a} (A) and http://{b} (B) — try:\n  \
             curl http://{a}/predictions/42\n  \
             curl -X POST -H 'content-type: application/json' -d '{{\"score\":0.5}}' http://{a}/predictions/42\n  \
             curl http://{b}/predictions/42\n  \
             curl http://{a}/health/cache\n  curl http://{a}/metrics\nCtrl-C to stop"
        );
        stop_requested(false).await;
    }
    if total_failed > 0 {
        return Err(format!("{total_failed} requests failed").into());
    }
    Ok(())
}
