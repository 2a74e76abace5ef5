fn main() {
    println!("{}", compile_shares::exercise::<constnet::GoogLeNet<f32>>());
}
