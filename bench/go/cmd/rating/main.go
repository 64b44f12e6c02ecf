// The book's rating service with an in-memory repository and no Kafka
// ingestion, on the address of --listen.
package main

import (
	"flag"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"movieexample.com/gen"
	"movieexample.com/rating/internal/controller/rating"
	grpchandler "movieexample.com/rating/internal/handler/grpc"
	"movieexample.com/rating/internal/repository/memory"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8082", "address to listen on")
	flag.Parse()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *listen, err)
	}
	srv := grpc.NewServer()
	reflection.Register(srv)
	// The book's memory repository has no lock: puts must not run concurrently.
	gen.RegisterRatingServiceServer(srv, grpchandler.New(rating.New(memory.New(), nil)))
	log.Printf("rating listening on %s", *listen)
	if err := srv.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
