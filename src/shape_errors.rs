//! Shape errors (filled below).
