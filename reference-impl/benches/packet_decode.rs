//! Decode throughput of the packet stream decoder, in bytes of stream per second.
//!
//! A stream of about 4 MiB of packets of one size (16 bytes: header only; 1 KB; 10,000
//! bytes: the limit), checksums in one pairing, is fed to a `PacketDecoder` that verifies
//! that pairing, 64 KiB per read, and drained after every read. One iteration decodes the
//! whole stream. Criterion reports the time per stream and the throughput.
//!
//! ```text
//! cargo bench -p reference-impl --bench packet_decode
//! ```

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use reference_impl::packet::codec::{ChecksumMode, HEADER_LEN, Packet, PacketDecoder, Pairing};

/// Bytes of stream per iteration, about.
const STREAM: usize = 4 << 20;
/// Bytes per read.
const READ: usize = 64 * 1024;
const PACKET_SIZES: [usize; 3] = [16, 1000, 10_000];

fn stream(packet_size: usize, pairing: Pairing) -> Vec<u8> {
    let data: Vec<u8> = (0..packet_size - HEADER_LEN).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(STREAM + packet_size);
    let mut n = 0i32;
    while out.len() < STREAM {
        n = n.wrapping_add(1);
        Packet::new(0, *b"abcd", n, data.clone()).encode(pairing, &mut out);
    }
    out
}

/// Decodes the stream; returns the number of packets.
fn decode(stream: &[u8], mode: ChecksumMode) -> usize {
    let mut decoder = PacketDecoder::new(mode);
    let mut packets = 0;
    for read in stream.chunks(READ) {
        decoder.feed(read);
        loop {
            match decoder.next_packet() {
                Ok(Some(packet)) => {
                    std::hint::black_box(&packet);
                    packets += 1;
                }
                Ok(None) => break,
                Err(e) => panic!("the bench stream does not decode: {e}"),
            }
        }
    }
    packets
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut group = criterion.benchmark_group("packet_decode");
    for pairing in [Pairing::BigEndian, Pairing::LittleEndian] {
        for size in PACKET_SIZES {
            let bytes = stream(size, pairing);
            let expected = bytes.len() / size;
            assert_eq!(decode(&bytes, pairing.into()), expected);
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(pairing.name(), format!("{size}B")),
                &bytes,
                |b, bytes| b.iter(|| decode(bytes, pairing.into())),
            );
        }
    }
    group.finish();
    criterion.final_summary();
}
