fn main() {
    println!("{}", compile_shares::exercise::<constnet::AlexNet<f32>>());
}
