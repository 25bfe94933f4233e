#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| reference_impl::fuzzing::mathsvc_decoder(data));
