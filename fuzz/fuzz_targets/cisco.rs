#![no_main]
//! See rekey::fuzzing::cisco for the input format and the invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rekey::fuzzing::cisco(data));
