// The book's movie service on the address of --listen, finding metadata and
// rating at the fixed addresses of --metadata-addr and --rating-addr.
package main

import (
	"flag"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"movieexample.com/gen"
	"movieexample.com/internal/staticregistry"
	"movieexample.com/movie/internal/controller/movie"
	metadatagateway "movieexample.com/movie/internal/gateway/metadata/grpc"
	ratinggateway "movieexample.com/movie/internal/gateway/rating/grpc"
	grpchandler "movieexample.com/movie/internal/handler/grpc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8083", "address to listen on")
	metadataAddr := flag.String("metadata-addr", "127.0.0.1:8081", "address of the metadata service")
	ratingAddr := flag.String("rating-addr", "127.0.0.1:8082", "address of the rating service")
	flag.Parse()
	registry := staticregistry.New(map[string][]string{
		"metadata": {*metadataAddr},
		"rating":   {*ratingAddr},
	})
	ctrl := movie.New(ratinggateway.New(registry), metadatagateway.New(registry))
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *listen, err)
	}
	srv := grpc.NewServer()
	reflection.Register(srv)
	gen.RegisterMovieServiceServer(srv, grpchandler.New(ctrl))
	log.Printf("movie listening on %s", *listen)
	if err := srv.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
