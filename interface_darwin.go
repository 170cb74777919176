package main

// defaultInterface: macOS names utun devices itself.
const defaultInterface = "utun"
