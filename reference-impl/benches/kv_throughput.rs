//! Request throughput of the reference key-value server over TLS.
//!
//! Starts the server in this process, logs in N clients (N = 1, 16, 256), and lets each do
//! PUT/GET pairs on its own key for a fixed time (3 s per N; set `KV_BENCH_SECS` to change
//! it). One op is one request and its reply. Logins happen before the clock starts.
//!
//! ```text
//! cargo bench -p reference-impl --bench kv_throughput
//! KV_BENCH_SECS=10 cargo bench -p reference-impl --bench kv_throughput
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::server::{self, ServerConfig};
use reference_impl::tls::{self, ClientTrust};
use rustls_pki_types::ServerName;

const CLIENT_COUNTS: [usize; 3] = [1, 16, 256];
const DEFAULT_SECS: f64 = 3.0;
const VALUE: &str = "a sixteen b value";

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    puts: u64,
    gets: u64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BenchError> {
    let secs = match std::env::var("KV_BENCH_SECS") {
        Ok(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("KV_BENCH_SECS={text:?} is not a positive number of seconds"))?,
        Err(_) => DEFAULT_SECS,
    };
    let duration = Duration::from_secs_f64(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cert = tls::self_signed(&[])?;
        let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der)?;
        let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der]))?;
        // First-use accounts: logins cost no PBKDF2 on the server, so the figures are about
        // requests, not password hashing.
        let server = server::spawn(ServerConfig::default(), server_tls).await?;
        println!(
            "kv server throughput over TLS: PUT/GET pairs, {secs} s per row, {} worker threads",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        println!(
            "{:>8} {:>12} {:>12} {:>12} {:>14}",
            "clients", "PUT/s", "GET/s", "total op/s", "mean latency"
        );
        for n in CLIENT_COUNTS {
            let (counts, elapsed) = measure(server.addr(), &client_tls, n, duration).await?;
            let rate = |count: u64| count as f64 / elapsed.as_secs_f64();
            let total = rate(counts.puts + counts.gets);
            // Each client has one request in flight: latency = clients / throughput.
            let latency_us = n as f64 / total * 1e6;
            println!(
                "{n:>8} {:>12.0} {:>12.0} {total:>12.0} {latency_us:>11.0} us",
                rate(counts.puts),
                rate(counts.gets),
            );
        }
        server.shutdown().await;
        Ok(())
    })
}

type BenchError = Box<dyn std::error::Error + Send + Sync>;

async fn measure(
    addr: SocketAddr,
    client_tls: &Arc<rustls::ClientConfig>,
    n: usize,
    duration: Duration,
) -> Result<(Counts, Duration), BenchError> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let name = ServerName::try_from("127.0.0.1")?;
        let mut client = Client::connect(addr, client_tls.clone(), name, Dialect::Spec).await?;
        client
            .login(&format!("bench-{n}-{i}"), &[i as u8; 32])
            .await?;
        clients.push(client);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        workers.spawn(async move {
            let key = format!("key{i}");
            let mut counts = Counts::default();
            while Instant::now() < deadline {
                client.put(&key, VALUE).await?;
                counts.puts += 1;
                client.get(&key).await?;
                counts.gets += 1;
            }
            Ok::<_, ClientError>((counts, client))
        });
    }
    let mut total = Counts::default();
    let mut done = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        let (counts, client) = joined??;
        total.puts += counts.puts;
        total.gets += counts.gets;
        done.push(client);
    }
    let elapsed = start.elapsed();
    for client in done {
        client.disconnect().await?;
    }
    Ok((total, elapsed))
}
