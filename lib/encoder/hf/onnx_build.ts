/** Small helpers to write ONNX protobuf graphs with onnx-proto. */
import onnxProto from "onnx-proto";

// deno-lint-ignore no-explicit-any
export const onnx = (onnxProto as any).onnx;

/** ONNX element types used here. */
export const DT = { FLOAT: 1, INT64: 7, FLOAT16: 10 } as const;
/** An ONNX element type code. */
export type ElemType = (typeof DT)[keyof typeof DT];

/** An ONNX node; number attributes are ints unless named in `floats`. */
export function node(
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, number | number[]> = {},
  floats: string[] = [],
): unknown {
  const attribute = Object.entries(attrs).map(([name, v]) =>
    Array.isArray(v)
      ? onnx.AttributeProto.create({ name, ints: v, type: onnx.AttributeProto.AttributeType.INTS })
      : floats.includes(name)
      ? onnx.AttributeProto.create({ name, f: v, type: onnx.AttributeProto.AttributeType.FLOAT })
      : onnx.AttributeProto.create({ name, i: v, type: onnx.AttributeProto.AttributeType.INT })
  );
  return onnx.NodeProto.create({ opType: op, input: inputs, output: outputs, attribute });
}

/** An initializer whose bytes live in an external file. */
export function externalInit(
  name: string,
  dims: number[],
  dataType: ElemType,
  ext: { location: string; offset: number; length: number },
): unknown {
  const t = onnx.TensorProto.create({ name, dims, dataType });
  t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  t.externalData = Object.entries(ext).map(([key, value]) =>
    onnx.StringStringEntryProto.create({ key, value: String(value) })
  );
  return t;
}

/** A small initializer stored in the graph. */
export function constInit(name: string, dataType: ElemType, dims: number[], values: number[]): unknown {
  if (dataType === DT.INT64) return onnx.TensorProto.create({ name, dims, dataType, int64Data: values });
  const data = new Float32Array(values);
  return onnx.TensorProto.create({ name, dims, dataType, rawData: new Uint8Array(data.buffer) });
}

/** A graph input or output declaration. */
export function valueInfo(name: string, elemType: ElemType, dims: (number | string)[]): unknown {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) =>
            onnx.TensorShapeProto.Dimension.create(typeof d === "number" ? { dimValue: d } : { dimParam: d })
          ),
        }),
      }),
    }),
  });
}

/** Serializes a model (opset 17). */
export function encodeModel(
  graph: { name: string; node: unknown[]; initializer: unknown[]; input: unknown[]; output: unknown[] },
): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "mrm",
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: 17 })],
    graph: onnx.GraphProto.create(graph),
  });
  return onnx.ModelProto.encode(model).finish();
}
