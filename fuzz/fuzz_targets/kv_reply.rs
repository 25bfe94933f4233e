#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| reference_impl::fuzzing::kv_reply_decoder(data));
