"""ONNX export of the acting graph and the onnxruntime policy that runs it on a robot.

`daydream.export.onnx_policy` (OnnxPolicy) needs only numpy and onnxruntime, so a robot
can act without torch; `daydream.export.onnx_export` needs the torch agent.
"""
