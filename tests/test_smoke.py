import queues


def test_send_then_receive_roundtrip(make_queue):
    name = make_queue()
    message_id = queues.send(name, {"hello": "world"})
    [delivery] = queues.receive(name)
    assert delivery.id == message_id
    assert delivery.body == {"hello": "world"}
    queues.ack(delivery.receipt)
    assert queues.queue_stats(name).depth == 0
