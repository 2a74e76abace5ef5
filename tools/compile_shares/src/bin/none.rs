fn main() {
    println!("{}", compile_shares::exercise::<constnet::Linear<f32, 2, 2>>());
}
