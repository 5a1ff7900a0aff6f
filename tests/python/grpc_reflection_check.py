"""A Python gRPC client built from server reflection alone (no .proto file): lists the
services, resolves mcpchat.v1.ChatService, and calls ListModels and Chat.

Environment: MCP_CHAT_GRPC (host:port), MCP_CHAT_MODEL.
"""

import os

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

channel = grpc.insecure_channel(os.environ["MCP_CHAT_GRPC"])
database = ProtoReflectionDescriptorDatabase(channel)
services = list(database.get_services())
assert "mcpchat.v1.ChatService" in services, services
pool = descriptor_pool.DescriptorPool(database)
service = pool.FindServiceByName("mcpchat.v1.ChatService")


def unary(method_name):
    method = service.methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return request_class, call


ListModelsRequest, list_models = unary("ListModels")
models = list_models(ListModelsRequest(), timeout=10)
assert [m.id for m in models.models] == [os.environ["MCP_CHAT_MODEL"]], models
print("ok ListModels", [m.id for m in models.models])

ChatRequest, chat = unary("Chat")
request = ChatRequest()
message = request.messages.add()
message.role = pool.FindEnumTypeByName("mcpchat.v1.Role").values_by_name["ROLE_USER"].number
message.content = "hello from python"
response = chat(request, timeout=30)
assert response.message.content == "Hello from the fake upstream", response
assert response.usage.total_tokens > 0, response
print("ok Chat", response.message.content)
print("all checks passed")
