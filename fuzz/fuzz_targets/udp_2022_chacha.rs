#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| proto::fuzzing::udp_2022_chacha(data));
