/** SwiGLU's elementwise part, in place into `gate`: gate = silu(gate) · up, silu(x) = x / (1 + e^−x). */
export function siluMul(gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    gate[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** x += y, elementwise over the first n values (the residual adds). */
export function addInPlace(x: Float32Array, y: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) x[i] += y[i];
}
