/**
 * The simulator's names for the one Kubernetes quantity codec, `lib/quantity.ts`.
 *
 * @module
 */

export {
  decodeBytes,
  decodeMilliCPU,
  encodeBytes,
  encodeMilliCPU,
  formatBytesQuantity as formatQuantityBytes,
  formatCpuQuantity as formatQuantityMilliCPU,
  formatK8sTime,
  parseQuantity,
  type Quantity,
  quantityToBytes as quantityToInt,
  quantityToMilli,
} from "../lib/quantity.ts";
