class FaceEmbeddingModel: pass
