fn main() {
    println!("{}", compile_shares::exercise::<constnet::Vgg16<f32>>());
}
