fn main() {
    println!("{}", compile_shares::exercise::<constnet::ZfNet<f32>>());
}
