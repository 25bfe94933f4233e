//! The RSA variant of the key-value server: how long a key exchange takes, and how many
//! requests per second go through once keys are exchanged.
//!
//! Handshakes: N connections one after another (both sides make a fresh 512-bit key pair
//! every time); the time from `connect` until the server's key has been read, as p50, p99
//! and mean. A TLS handshake to the TLS server of the same store is measured the same way,
//! for comparison, and one block's decryption and encryption alone. Requests: 1 and 16 logged-in clients doing PUT/GET pairs for a fixed
//! time, each request one RSA block each way.
//!
//! ```text
//! cargo bench -p reference-impl --bench kv_rsa
//! KV_BENCH_SECS=10 KV_BENCH_HANDSHAKES=1000 cargo bench -p reference-impl --bench kv_rsa
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reference_impl::kv::client::{Client, ClientError};
use reference_impl::kv::codec::Dialect;
use reference_impl::kv::rsa::{self, KeyPair};
use reference_impl::kv::server::{self, RsaOptions, ServerConfig};
use reference_impl::tls::{self, ClientTrust};
use rustls_pki_types::ServerName;

const CLIENT_COUNTS: [usize; 2] = [1, 16];
const DEFAULT_SECS: f64 = 3.0;
const DEFAULT_HANDSHAKES: usize = 300;
const VALUE: &str = "a sixteen b value";

type BenchError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// A positive number from the environment, or `default`.
fn setting<T: std::str::FromStr + PartialOrd + Default>(
    name: &str,
    default: T,
) -> Result<T, BenchError> {
    match std::env::var(name) {
        Ok(text) => text
            .parse::<T>()
            .ok()
            .filter(|v| *v > T::default())
            .ok_or_else(|| format!("{name}={text:?} is not a positive number").into()),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<(), BenchError> {
    let secs: f64 = setting("KV_BENCH_SECS", DEFAULT_SECS)?;
    let handshakes: usize = setting("KV_BENCH_HANDSHAKES", DEFAULT_HANDSHAKES)?;
    let duration = Duration::from_secs_f64(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let rsa = server::spawn_rsa(ServerConfig::default(), RsaOptions::default()).await?;
        let cert = tls::self_signed(&[])?;
        let server_tls = tls::server_config(vec![cert.cert_der.clone()], cert.key_der)?;
        let client_tls = tls::client_config(ClientTrust::Roots(vec![cert.cert_der]))?;
        let tls_server = server::spawn(ServerConfig::default(), server_tls).await?;
        println!(
            "kv server, RSA variant: {handshakes} handshakes in a row, then {secs} s of \
             PUT/GET pairs per row, {} worker threads",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        println!(
            "{:>26} {:>10} {:>10} {:>10}",
            "operation", "p50", "p99", "mean"
        );
        let mut times = Vec::with_capacity(handshakes);
        for _ in 0..handshakes {
            let start = Instant::now();
            let client =
                Client::connect_rsa(rsa.addr(), Dialect::Spec, RsaOptions::default()).await?;
            times.push(start.elapsed());
            drop(client);
        }
        print_times("RSA key exchange (512)", &mut times);
        times.clear();
        for _ in 0..handshakes {
            let name = ServerName::try_from("127.0.0.1")?;
            let start = Instant::now();
            let client =
                Client::connect(tls_server.addr(), client_tls.clone(), name, Dialect::Spec).await?;
            times.push(start.elapsed());
            drop(client);
        }
        print_times("TLS 1.3 handshake", &mut times);
        times.clear();

        // The cost under every request: one private-key operation per block received.
        let keys = KeyPair::generate()?;
        let block = rsa::encrypt(&keys.public_key(), b"GET colour\n")?;
        for _ in 0..handshakes {
            let start = Instant::now();
            keys.decrypt(&block)?;
            times.push(start.elapsed());
        }
        print_times("decrypt one block", &mut times);
        times.clear();
        for _ in 0..handshakes {
            let start = Instant::now();
            rsa::encrypt(&keys.public_key(), b"GET colour\n")?;
            times.push(start.elapsed());
        }
        print_times("encrypt one block", &mut times);

        println!();
        println!(
            "{:>8} {:>12} {:>14}",
            "clients", "requests/s", "mean latency"
        );
        for n in CLIENT_COUNTS {
            let (ops, elapsed) = measure(rsa.addr(), n, duration).await?;
            let total = ops as f64 / elapsed.as_secs_f64();
            // Each client has one request in flight: latency = clients / throughput.
            let latency_us = n as f64 / total * 1e6;
            println!("{n:>8} {total:>12.0} {latency_us:>11.0} us");
        }
        rsa.shutdown().await;
        tls_server.shutdown().await;
        Ok(())
    })
}

fn print_times(what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!(
        "{what:>26} {:>10} {:>10} {:>10}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(mean)
    );
}

async fn measure(
    addr: SocketAddr,
    n: usize,
    duration: Duration,
) -> Result<(u64, Duration), BenchError> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = Client::connect_rsa(addr, Dialect::Spec, RsaOptions::default()).await?;
        // First-use accounts: no PBKDF2 on the server, so the figures are about requests.
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
            let mut ops = 0u64;
            while Instant::now() < deadline {
                client.put(&key, VALUE).await?;
                client.get(&key).await?;
                ops += 2;
            }
            Ok::<_, ClientError>((ops, client))
        });
    }
    let mut total = 0;
    let mut done = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        let (ops, client) = joined??;
        total += ops;
        done.push(client);
    }
    let elapsed = start.elapsed();
    for client in done {
        client.disconnect().await?;
    }
    Ok((total, elapsed))
}
