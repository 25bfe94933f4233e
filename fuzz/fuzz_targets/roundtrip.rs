#![no_main]
use reference_impl::fuzzing::{AnyMessage, roundtrip};
libfuzzer_sys::fuzz_target!(|m: AnyMessage| roundtrip(&m));
