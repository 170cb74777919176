//go:build !darwin

package main

const defaultInterface = "wire0"
