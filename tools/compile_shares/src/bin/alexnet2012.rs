fn main() {
    println!("{}", compile_shares::exercise::<constnet::AlexNet2012<f32>>());
}
