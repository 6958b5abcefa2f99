//! `type = "file"`: the embedded default backend (age-encrypted records in a directory).
