//! `type = "taegis"`: Secureworks Taegis XDR.
