use candle_core as _;
use candle_nn as _;
fn main() {}
