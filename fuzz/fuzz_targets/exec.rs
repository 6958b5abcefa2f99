#![no_main]
//! See rekey::fuzzing::exec_plugin for the input format and the invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rekey::fuzzing::exec_plugin(data));
